"""The ``[kvs]`` configuration options and :func:`list_opts`.

:func:`list_opts` is published on the ``oslo.config.opts`` entry point under
the ``oslo.kvs`` namespace, so ``oslo-config-generator --namespace oslo.kvs``
prints these options.
"""

import copy

from oslo_config import cfg

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
        'serializer', default='msgpack', choices=['msgpack', 'pickle'],
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

# The store the oslo-kvs command works on; services configure their stores
# in code and do not read these.
command_opts = [
    cfg.StrOpt(
        'backing_store', default='openstack.kvs.Memory',
        help='Backend of the store the oslo-kvs command checks and '
             'benchmarks.'),
    cfg.MultiStrOpt(
        'backend_argument', default=[], secret=True,
        help='Arguments for that backend, each as "name:value"; give the '
             'option once per argument. Secret, because arguments can '
             'hold passwords.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[kvs]`` options on ``conf`` (safe to call again)."""
    conf.register_opts(kvs_opts, group=GROUP)


def register_command_opts(conf: cfg.ConfigOpts) -> None:
    """Register the options only the oslo-kvs command reads."""
    register_opts(conf)
    conf.register_opts(command_opts, group=GROUP)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the options of oslo_kvs for the sample config generator.

    :returns: a list of ``(group_name, [opts])`` tuples.
    """
    return [(GROUP, copy.deepcopy(kvs_opts + memoize_opts + command_opts))]
