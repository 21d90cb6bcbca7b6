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

"""oslo_kvs: a key-value store facade for OpenStack services.

::

    import oslo_kvs
    store = oslo_kvs.get_key_value_store('tokens')
    store.configure('openstack.kvs.Memory')
    store.set('k', {'v': 1})
"""

from oslo_kvs.core import get_key_value_store
from oslo_kvs.core import KeyValueStore
from oslo_kvs.core import KeyValueStoreLock
from oslo_kvs.core import sha1_mangle_key
from oslo_kvs.core import sha256_mangle_key
from oslo_kvs.opts import register_store_opts

__all__ = ['get_key_value_store', 'KeyValueStore', 'KeyValueStoreLock',
           'register_store_opts', 'sha1_mangle_key', 'sha256_mangle_key']
