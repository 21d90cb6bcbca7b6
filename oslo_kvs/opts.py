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

"""The ``[kvs]`` configuration options and :func:`list_opts`.

:func:`list_opts` is published on the ``oslo.config.opts`` entry point under
the ``oslo.kvs`` namespace, so ``oslo-config-generator --namespace oslo.kvs``
prints these options.
"""

import copy

from oslo_config import cfg

from oslo_kvs.backends.base import MAX_SECONDS
from oslo_kvs import exception
from oslo_kvs.protection import MODES as PROTECTION_MODES
from oslo_kvs.serialization import SERIALIZERS

GROUP = 'kvs'

kvs_opts = [
    cfg.ListOpt(
        'backends', default=[],
        help='Extra KVS backends to register, as dotted "module.Class" '
             'paths. Each is registered as "openstack.kvs.<Class>" and can '
             'then be given to configure() as the backing store.'),
    cfg.StrOpt(
        'config_prefix', default='openstack.kvs',
        help='Prefix of every key written by every store, so that several '
             'services (or deployments) sharing one server never see each '
             'other\'s keys. Changing it makes existing keys unreachable.'),
    cfg.BoolOpt(
        'enable_key_mangler', default=True,
        help='Turn every key into a fixed-length hash before it reaches the '
             'backend, so any Unicode key of any length can be stored. '
             'Only disable it for debugging: without it, keys the backend '
             'cannot store (for example long keys on memcached) are '
             'refused.'),
    cfg.IntOpt(
        'default_lock_timeout', default=5, min=0,
        help='Seconds after which a lock frees itself if its holder does '
             'not release it (for example because the holder died). '
             '0 means locks never expire, which can leave a distributed '
             'lock held forever.'),
    cfg.IntOpt(
        'update_attempts', default=10, min=1, max=1000,
        help='Times a store\'s update() and incr() read, change and try '
             'to write a value while other writers keep changing it '
             'first; then they raise Conflict, having written nothing. '
             'Attempts are a few milliseconds apart, with random jitter.'),
    cfg.IntOpt(
        'duration_sampling', default=20, min=1, max=1000000,
        help='When an OpenTelemetry SDK is configured, the '
             'db.client.operation.duration histogram records the duration '
             'of one store operation in this many, chosen at random, so '
             'its percentiles stay unbiased. 1 records every operation, '
             'which costs several microseconds per call in the Python SDK. '
             'The oslo_kvs.client.operations counter and stats() count '
             'every operation whatever this is.'),
    cfg.StrOpt(
        'value_protection', default='none',
        help='Protection of stored values, for stores that do not set '
             'their own: "none"; "mac" (HMAC-SHA256: values readable on '
             'the server but not forgeable); or "encrypt" (AES-256-GCM: '
             'neither readable nor forgeable). Every value is bound to its '
             'store and key, so it cannot be moved. Case-insensitive.'),
    cfg.ListOpt(
        'protection_keys', default=[], secret=True,
        help='Secrets for value_protection, each at least 32 bytes. The '
             'first protects new values; all are tried when reading, so '
             'add the new secret first, keep the old ones until their '
             'values have expired or been rewritten, then remove them.'),
    cfg.StrOpt(
        'serializer', default='msgpack', choices=SERIALIZERS,
        help='How values are encoded. "msgpack" is safe and keeps the '
             'supported types; "pickle" stores any picklable type but is '
             'refused on network backends unless value_protection is on, '
             'because unpickling runs code from the server.'),
]

# Read by oslo_kvs.memoize; the per-section caching/cache_time options are
# registered there, in the consumer's own groups.
memoize_opts = [
    cfg.BoolOpt(
        'memoize_enabled', default=True,
        help='Global switch for functions memoized with '
             'oslo_kvs.memoize; each section also has its own "caching" '
             'option. When off, memoized functions always run.'),
    cfg.IntOpt(
        'memoize_expiration_time', default=600, min=0,
        help='Seconds a memoized result stays valid in sections whose '
             '"cache_time" is unset. 0 means until invalidated (or evicted '
             'by the store).'),
    cfg.FloatOpt(
        'memoize_dead_retry', default=5.0, min=0,
        help='Seconds memoized functions skip a store after it failed, '
             'before trying it again. Meanwhile they run uncached.'),
]


def memoize_section_opts() -> list[cfg.Opt]:
    """The per-section options, for a consumer's own ``list_opts()``.

    ``caching`` and ``cache_time`` are registered in the group given to
    :func:`oslo_kvs.memoize.get_memoization_decorator` (``cache_time``
    also in its ``expiration_group``) unless that group already has
    options of those names, as Keystone's sections do; then those are
    used.
    """
    return [
        cfg.BoolOpt('caching', default=True,
                    help='Memoize this section\'s results. Has no effect '
                         'unless [kvs] memoize_enabled is true as well.'),
        cfg.IntOpt('cache_time', min=0,
                   help='Seconds a memoized result of this section stays '
                        'valid. Unset means [kvs] memoize_expiration_time; '
                        '0 means until invalidated (or evicted by the '
                        'store).'),
    ]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[kvs]`` options on ``conf`` (safe to call again)."""
    conf.register_opts(kvs_opts, group=GROUP)


def store_opts() -> list[cfg.Opt]:
    """The options of one store, for a consumer's own group.

    Register them with :func:`register_store_opts`; return them (with
    the consumer's group name) from the consumer's ``list_opts()`` so its
    sample configuration shows them. Unset options leave the store's
    defaults (the ``[kvs]`` options) in force.

    :returns: fresh option objects, which the caller may keep.
    """
    return [
        cfg.StrOpt(
            'backend', default='openstack.kvs.Memory',
            help='Backend of this store: openstack.kvs.Memory (this '
                 'process only), openstack.kvs.Memcached, '
                 'openstack.kvs.Redis, openstack.kvs.MongoDB, another '
                 'openstack.kvs.<Class> registered through [kvs] '
                 'backends, or a dogpile.cache backend name.'),
        cfg.MultiStrOpt(
            'backend_argument', default=[], secret=True,
            help='Arguments of the backend, each as "name:value", for '
                 'example "url:redis://cache.example.org:6379/0"; give the '
                 'option once per argument. Values are checked like '
                 'arguments given in code. Secret, because arguments can '
                 'hold passwords.'),
        cfg.FloatOpt(
            'expire_time', min=0, max=MAX_SECONDS,
            help='Seconds a value lives after it is written; 0 or unset: '
                 'values never expire (the server may still evict them). '
                 'A service may ask for another expiry per call.'),
        cfg.FloatOpt(
            'lock_timeout', min=0, max=MAX_SECONDS,
            help='Seconds after which a lock of this store frees itself '
                 'if its holder does not release it (default: [kvs] '
                 'default_lock_timeout).'),
        cfg.FloatOpt(
            'lock_window', min=0, max=MAX_SECONDS,
            help='Seconds before a lock expires in which writes under it '
                 'are refused, on backends that cannot check the lock and '
                 'write in one step (default: 1, at most half of '
                 'lock_timeout).'),
        cfg.StrOpt(
            'value_protection', choices=PROTECTION_MODES, ignore_case=True,
            help='Protection of this store\'s values (default: [kvs] '
                 'value_protection): "none", "mac" (not forgeable) or '
                 '"encrypt" (neither readable nor forgeable).'),
        cfg.ListOpt(
            'protection_keys', secret=True,
            help='Secrets for value_protection, each at least 32 bytes; '
                 'the first protects new values, all are tried when '
                 'reading (default: [kvs] protection_keys).'),
        cfg.StrOpt(
            'serializer', choices=SERIALIZERS,
            help='How values are encoded (default: [kvs] serializer): '
                 '"msgpack", or "pickle", which needs value_protection on '
                 'network backends.'),
        cfg.FloatOpt(
            'near_cache_ttl', min=0, max=MAX_SECONDS,
            help='Seconds a value read from the server may be served '
                 'from this process\'s memory instead (a near cache); 0 '
                 'or unset: no near cache. Another process\'s write may '
                 'stay unseen here that long (on Redis, invalidation '
                 'makes it milliseconds); this process always sees its '
                 'own writes.'),
        cfg.IntOpt(
            'near_cache_size', min=1,
            help='Most values the near cache keeps per process (default: '
                 '10000); the least recently used go first. Only used '
                 'with near_cache_ttl.'),
    ]


#: The option of :func:`store_opts` that names the backend; every other
#: one is a ``configure()`` argument of the same name.
BACKEND = 'backend'
ARGUMENTS = 'backend_argument'


def group_store_opts(group: str) -> list[cfg.Opt]:
    """:func:`store_opts` as registered in ``group``.

    ``[kvs]`` already has value_protection, protection_keys and serializer
    (every store's defaults); there ``backend`` also reads the command's
    former ``backing_store``.
    """
    options = store_opts()
    if group == GROUP:
        own = {opt.name for opt in kvs_opts}
        options = [opt for opt in options if opt.name not in own]
        options[0].deprecated_opts = [
            cfg.DeprecatedOpt('backing_store', group=GROUP)]
    return options


def register_store_opts(conf: cfg.ConfigOpts, group: str) -> None:
    """Register a store's options in ``group``.

    The options are those of :func:`oslo_kvs.opts.store_opts`.

    Safe to call again. In ``[kvs]`` itself, whose ``value_protection``,
    ``protection_keys`` and ``serializer`` already hold every store's
    defaults, those are kept, and ``backend`` also reads the former
    ``[kvs] backing_store``.

    :raises exception.ConfigurationError: when another library already
        registered one of these names in ``group`` with another meaning
        (for example ``[cache] backend`` of oslo.cache).
    """
    if not isinstance(group, str) or not group.strip():
        raise exception.ConfigurationError(
            'A store\'s option group must be a non-empty str, not %r'
            % (group,))
    if group == GROUP:
        register_opts(conf)
    for opt in group_store_opts(group):
        try:
            conf.register_opt(opt, group=group)
        except cfg.DuplicateOptError:
            raise exception.ConfigurationError(
                'Cannot register the store option %r in [%s]: another '
                'library already has an option of that name there; give '
                'the store a group of its own' % (opt.name, group)) from None


#: ``oslo-kvs --group``: the group holding the store the command works on.
group_opt = cfg.StrOpt(
    'group', default=GROUP,
    help='Configuration group holding the store options (backend, '
         'backend_argument, ...) of the store to work on, as a service '
         'registers them with register_store_opts (default: kvs).')


def register_command_opts(conf: cfg.ConfigOpts) -> None:
    """Register what the oslo-kvs command reads: ``[kvs]``, ``--group``.

    The store options of ``[kvs]`` are registered too; those of another
    group once the command line names it (:func:`register_store_opts`).
    """
    register_store_opts(conf, GROUP)  # [kvs] included
    conf.register_cli_opt(group_opt)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the options of oslo_kvs for the sample config generator.

    :returns: a list of ``(group_name, [opts])`` tuples.
    """
    return [(GROUP, copy.deepcopy(kvs_opts + memoize_opts))]
