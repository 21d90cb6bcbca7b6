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

"""A store nothing references is collected; the next lookup says so."""

import gc
import logging
import uuid

import pytest

import oslo_kvs
from oslo_kvs import exception


def test_lost_store_hint(caplog):
    name = 'lost-%s' % uuid.uuid4().hex
    caplog.set_level(logging.INFO, logger='oslo_kvs.core')
    oslo_kvs.get_key_value_store(name).configure('openstack.kvs.Memory')
    gc.collect()
    assert 'garbage-collected while configured' in caplog.text
    store = oslo_kvs.get_key_value_store(name)
    with pytest.raises(exception.NotConfigured,
                       match='garbage-collected.*module-level name'):
        store.get('k')


def test_kept_or_closed_store_gives_no_hint(caplog):
    kept_name, closed_name = ('kept-%s' % uuid.uuid4().hex,
                              'closed-%s' % uuid.uuid4().hex)
    caplog.set_level(logging.INFO, logger='oslo_kvs.core')
    kept = oslo_kvs.get_key_value_store(kept_name)
    kept.configure('openstack.kvs.Memory')
    closed = oslo_kvs.get_key_value_store(closed_name)
    closed.configure('openstack.kvs.Memory')
    closed.close()
    del closed
    gc.collect()
    assert 'garbage-collected' not in caplog.text
    assert oslo_kvs.get_key_value_store(kept_name) is kept
    with pytest.raises(exception.NotConfigured) as caught:
        oslo_kvs.get_key_value_store(closed_name).get('k')
    assert 'garbage-collected' not in str(caught.value)
