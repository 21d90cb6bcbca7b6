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

"""Encrypted and MAC-protected stores against an unprotected one.

All stores share one memcached started here. Fernet (AES-128-CBC with
HMAC-SHA256, what keystonemiddleware-style protection resembles) is shown
for comparison: the unprotected store's value is sealed with Fernet by hand
around the same calls.

Target: encrypted ``get`` and ``set`` <= 1.15x unprotected.
"""

import uuid

from cryptography import fernet

import oslo_kvs
from oslo_kvs_tests.bench import common
from oslo_kvs_tests import servers

VALUE = {'id': 'a' * 32, 'roles': ['admin', 'member'], 'expires': None,
         'catalog': ['endpoint-%d' % i for i in range(20)]}
SECRET = 'bench-secret-' + 'x' * 32
PLAIN = 'unprotected'


def _store(address, **args):
    store = oslo_kvs.get_key_value_store('bench-%s' % uuid.uuid4())
    store.configure('openstack.kvs.Memcached', url=address, **args)
    return store


def run(rounds):
    server = servers.MemcachedServer(extra=['-t', '1'],
                                     cpu=common.cpu()).start()
    try:
        plain = _store(server.address)
        encrypted = _store(server.address, value_protection='encrypt',
                           protection_keys=[SECRET])
        mac = _store(server.address, value_protection='mac',
                     protection_keys=[SECRET])
        sealer = fernet.Fernet(fernet.Fernet.generate_key())
        for store in (plain, encrypted, mac):
            store.set('k', VALUE)
        plain.set('fernet', sealer.encrypt(b'x' * 200))

        def fernet_get():
            return sealer.decrypt(plain.get('fernet'))

        def fernet_set():
            plain.set('fernet', sealer.encrypt(b'x' * 200))

        return [
            common.Result('protection', 'get', common.compare({
                PLAIN: lambda: plain.get('k'),
                'encrypt (AES-256-GCM)': lambda: encrypted.get('k'),
                'mac (HMAC-SHA256)': lambda: mac.get('k'),
                'Fernet around get (info)': fernet_get,
            }, rounds), PLAIN),
            common.Result('protection', 'set', common.compare({
                PLAIN: lambda: plain.set('k', VALUE),
                'encrypt (AES-256-GCM)': lambda: encrypted.set('k', VALUE),
                'mac (HMAC-SHA256)': lambda: mac.set('k', VALUE),
                'Fernet around set (info)': fernet_set,
            }, rounds), PLAIN),
        ]
    finally:
        server.cleanup()
