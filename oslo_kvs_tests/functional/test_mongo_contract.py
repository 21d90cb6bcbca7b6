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

"""The backend contract on ``openstack.kvs.MongoDB`` over the wire.

It runs on the session's ``mongo_server``: SecantusDB, a MongoDB-wire
server on WiredTiger that the tests start themselves, or the real mongod
that ``OSLO_KVS_MONGO_URL`` names. Either way pymongo's real paths run
(handshake, cursors, bulk writes, write concerns, server errors), and
``add`` and the locks race on a server that really is concurrent.
doc/source/user/backend-mongodb.rst says what SecantusDB cannot prove.
"""

import pytest

from oslo_kvs import testing


class TestMongoContract(testing.StoreContract):
    expire_time_alias = 'mongo_ttl_seconds'
    expiry_wait = 1.5
    hypothesis_examples = 40

    @pytest.fixture(autouse=True)
    def _backend(self, mongo_server, mongo_collection):
        self.backing_store = 'openstack.kvs.MongoDB'
        self.backend_args = mongo_server.collection_args(
            mongo_collection.name)
