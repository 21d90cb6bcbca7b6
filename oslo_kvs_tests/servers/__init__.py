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

"""Start and stop real servers for the tests.

:mod:`.base` has what every server shares (the child process on a free
loopback port, server groups, throwaway TLS certificates); one module per
kind of server holds its starters and pytest fixtures: :mod:`.memcached`,
:mod:`.redis` and :mod:`.mongo` (SecantusDB, a real mongod, mongomock).
Everything is named here too, so ``servers.<name>`` reaches it, and
``conftest.py`` loads this package as the pytest plugin of the fixtures.
"""

from oslo_kvs_tests.servers.base import free_port  # noqa: F401
from oslo_kvs_tests.servers.base import LOOPBACK  # noqa: F401
from oslo_kvs_tests.servers.base import make_tls_files  # noqa: F401
from oslo_kvs_tests.servers.base import missing  # noqa: F401
from oslo_kvs_tests.servers.base import pinned  # noqa: F401
from oslo_kvs_tests.servers.base import require_binary  # noqa: F401
from oslo_kvs_tests.servers.base import running  # noqa: F401
from oslo_kvs_tests.servers.base import ServerGroup  # noqa: F401
from oslo_kvs_tests.servers.base import ServerProcess  # noqa: F401
from oslo_kvs_tests.servers.base import TLSFiles  # noqa: F401
from oslo_kvs_tests.servers.base import wait_for_port  # noqa: F401
from oslo_kvs_tests.servers.memcached import memcached_cluster  # noqa
from oslo_kvs_tests.servers.memcached import memcached_factory  # noqa
from oslo_kvs_tests.servers.memcached import memcached_server  # noqa
from oslo_kvs_tests.servers.memcached import memcached_tls_server  # noqa
from oslo_kvs_tests.servers.memcached import MemcachedCluster  # noqa
from oslo_kvs_tests.servers.memcached import MemcachedServer  # noqa
from oslo_kvs_tests.servers.mongo import ExternalMongo  # noqa: F401
from oslo_kvs_tests.servers.mongo import install_mongomock  # noqa: F401
from oslo_kvs_tests.servers.mongo import mongo_collection  # noqa: F401
from oslo_kvs_tests.servers.mongo import mongo_commands  # noqa: F401
from oslo_kvs_tests.servers.mongo import mongo_factory  # noqa: F401
from oslo_kvs_tests.servers.mongo import mongo_server  # noqa: F401
from oslo_kvs_tests.servers.mongo import MONGO_URL_VARIABLE  # noqa: F401
from oslo_kvs_tests.servers.mongo import MongoCommands  # noqa: F401
from oslo_kvs_tests.servers.mongo import MongoServer  # noqa: F401
from oslo_kvs_tests.servers.redis import redis_acl_server  # noqa: F401
from oslo_kvs_tests.servers.redis import redis_cluster  # noqa: F401
from oslo_kvs_tests.servers.redis import redis_cluster_factory  # noqa
from oslo_kvs_tests.servers.redis import redis_cluster_port  # noqa: F401
from oslo_kvs_tests.servers.redis import redis_factory  # noqa: F401
from oslo_kvs_tests.servers.redis import redis_failover_group  # noqa
from oslo_kvs_tests.servers.redis import redis_sentinel_factory  # noqa
from oslo_kvs_tests.servers.redis import redis_sentinel_group  # noqa
from oslo_kvs_tests.servers.redis import redis_server  # noqa: F401
from oslo_kvs_tests.servers.redis import redis_tls_server  # noqa: F401
from oslo_kvs_tests.servers.redis import RedisClusterGroup  # noqa: F401
from oslo_kvs_tests.servers.redis import RedisSentinel  # noqa: F401
from oslo_kvs_tests.servers.redis import RedisSentinelGroup  # noqa: F401
from oslo_kvs_tests.servers.redis import RedisServer  # noqa: F401
