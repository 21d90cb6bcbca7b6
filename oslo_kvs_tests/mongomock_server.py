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

"""One mongomock server behind every MongoDB backend a test configures.

Only for what a real server cannot give: the MongoDB user guide's examples
name made-up hosts, credentials and replica sets, which mongomock accepts
as they are. Everything else runs on the real wire server of
:mod:`oslo_kvs_tests.servers`.
"""

import functools
import inspect
import typing as ty

import mongomock
import mongomock.collection
import pytest

from oslo_kvs.backends import mongo


def _allow_bulk_sort_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let mongomock's bulk builder take pymongo >= 4.10's ``sort=None``.

    mongomock 4.3 does not accept the ``sort`` argument (mongomock issue
    #912); the backend never sorts, so an unsorted operation is forwarded
    and a real sort refused. Nothing is patched once mongomock takes it.
    """
    builder = mongomock.collection.BulkOperationBuilder
    original = builder.add_replace
    if 'sort' in inspect.signature(original).parameters:
        return

    def add_replace(self, selector, doc, upsert, sort=None, **kwargs):
        if sort is not None:
            raise NotImplementedError('mongomock cannot sort in bulk_write')
        return original(self, selector, doc, upsert, **kwargs)

    monkeypatch.setattr(builder, 'add_replace', add_replace)


def install(monkeypatch: pytest.MonkeyPatch) -> ty.Any:
    """Make every backend configured from now on use one mongomock server.

    Backends reach it through ``MongoBackend.client_factory``, the
    backend's public hook for building its client.
    """
    _allow_bulk_sort_none(monkeypatch)
    server = mongomock.store.ServerStore()
    monkeypatch.setattr(mongo.MongoBackend, 'client_factory',
                        functools.partial(mongomock.MongoClient,
                                          _store=server))
    return server
