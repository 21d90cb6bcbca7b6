# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""MongoDB: oslo.cache's enable_retry_client maps onto pymongo's retries."""

import uuid

import pymongo
import pytest

import oslo_kvs
from oslo_kvs.backends import mongo
from oslo_kvs import exception


@pytest.fixture
def client_kwargs(monkeypatch):
    """The keyword arguments each configured backend gave MongoClient."""
    calls = []

    def factory(hosts, **kwargs):
        calls.append(kwargs)
        return pymongo.MongoClient(hosts, **kwargs)

    monkeypatch.setattr(mongo.MongoBackend, 'client_factory', factory)
    return calls


def configure(db_hosts='127.0.0.1:1', **args):
    store = oslo_kvs.get_key_value_store('mongo-%s' % uuid.uuid4())
    store.configure('openstack.kvs.MongoDB', db_hosts=db_hosts,
                    db_name='kvs', cache_collection='cache', **args)
    store.close()


@pytest.mark.parametrize('given,expected', [
    ({}, True), ({'enable_retry_client': 'false'}, False),
    ({'enable_retry_client': True}, True)])
def test_retryable_reads_and_writes(client_kwargs, given, expected):
    configure(**given)
    kwargs, = client_kwargs
    assert kwargs['retryReads'] is expected
    assert kwargs['retryWrites'] is expected


def test_uri_option_wins(client_kwargs):
    configure(db_hosts='mongodb://127.0.0.1:1/?retryWrites=false')
    kwargs, = client_kwargs
    assert 'retryWrites' not in kwargs
    assert kwargs['retryReads'] is True


@pytest.mark.parametrize('name', ['retry_attempts', 'retry_delay'])
def test_pymongo_retries_once_so_counts_are_refused(client_kwargs, name):
    with pytest.raises(exception.ConfigurationError,
                       match='enable_retry_client'):
        configure(**{name: 2})
