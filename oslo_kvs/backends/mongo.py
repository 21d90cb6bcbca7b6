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

"""``openstack.kvs.MongoDB``: durable, replicated storage in MongoDB.

Each stored key is one document in ``cache_collection``::

    {_id: <stored key>, value: <binary>, expires_at: <UTC datetime>}

``expires_at`` is absent for values that never expire. A TTL index on it
(``expireAfterSeconds=0``) lets the server delete expired documents, and
every read and conditional write also filters on it, because the server's
TTL monitor runs only once a minute: an expired document is never returned
and never blocks ``add``. Locks are documents in the same collection
(``{_id: <lock key>, token: ..., expires_at: ...}``); the store gives lock
keys and data keys different prefixes, so they never meet.

Argument names are Keystone's (``keystone.common.cache.backends.mongo``),
mapped onto pymongo 4.
"""

import dataclasses
import datetime
import logging
import re
import typing as ty
import urllib.parse

from oslo_config import types
import pymongo
from pymongo import errors as mongo_errors
from pymongo import uri_parser

from oslo_kvs.backends import address
from oslo_kvs.backends import base
from oslo_kvs import exception

LOG = logging.getLogger(__name__)

_URI_SCHEMES = ('mongodb://', 'mongodb+srv://')
#: Spellings of tls_cert_reqs (any case); OPTIONAL verifies like REQUIRED.
_CERT_REQS = ('NONE', 'OPTIONAL', 'REQUIRED', 'CERT_NONE', 'CERT_OPTIONAL',
              'CERT_REQUIRED')

#: BSON's document limit; a value near it cannot be stored.
MAX_DOCUMENT_SIZE = 16 * 1024 * 1024
#: Room for the field names, ``_id`` framing and ``expires_at``.
_DOCUMENT_OVERHEAD = 128

#: Server refusals of the TTL index that writes can live with:
#: Unauthorized, IndexOptionsConflict, IndexKeySpecsConflict.
_INDEX_REFUSALS = frozenset([13, 85, 86])


def _hosts(value: ty.Any) -> list[str]:
    """``db_hosts``: a list (or comma string) of host:port, or one URI.

    Host entries come back as their labels (``host:port``, the default
    port added). Messages never quote a URI: it may carry a password.
    """
    if isinstance(value, str):
        value = ([value] if value.strip().startswith(_URI_SCHEMES) else
                 value.split(','))
    if not isinstance(value, (list, tuple)):
        raise TypeError('expected a list of host:port or a mongodb:// URI')
    hosts = [str(item).strip() for item in value if str(item).strip()]
    if not hosts:
        raise ValueError('no host given')
    if any(host.startswith(_URI_SCHEMES) for host in hosts):
        if len(hosts) > 1:
            raise ValueError('a mongodb:// URI must be the only entry')
        return hosts
    try:
        return [address.Address.parse(host, pymongo.MongoClient.PORT).label
                for host in hosts]
    except address.AddressError as exc:
        raise ValueError('bad entry: %s' % exc) from None


def _write_concern(value: ty.Any) -> int | str | None:
    """``w``: a number of members, ``majority`` or a tag set name.

    Keystone's ``-1`` means "the server's default". ``0`` is refused:
    unacknowledged writes cannot tell ``add``, ``delete`` or a lock
    whether they succeeded.
    """
    if isinstance(value, str) and not re.fullmatch(r'\s*-?\d+\s*', value):
        return value.strip()  # "majority" or a tag set name
    members = int(base.count(min=-1)(value))
    if members == 0:
        raise ValueError('w must be at least 1 (unacknowledged writes '
                         'cannot report whether add, delete or a lock '
                         'succeeded) or -1 for the server default')
    return None if members == -1 else members


#: pymongo's read preference modes, by their spelling without case or _.
_READ_MODES = {mode.lower(): mode for mode in (
    'primary', 'primaryPreferred', 'secondary', 'secondaryPreferred',
    'nearest')}


def _read_preference(value: ty.Any) -> str:
    """A read preference in any case, ``PRIMARY_PREFERRED`` too."""
    mode = _READ_MODES.get(str(value).replace('_', '').lower())
    if mode is None:
        raise ValueError('valid read preferences are %s (any case)'
                         % ', '.join(_READ_MODES.values()))
    return mode


def _son_manipulator(value: ty.Any) -> ty.NoReturn:
    raise ValueError('not supported: pymongo 4 removed SON manipulators '
                     'and this backend stores only bytes')


OPTIONS = (
    # Secret: a URI may carry a password, so a rejected value is not echoed.
    base.Option('db_hosts', _hosts, secret=True, server=True,
                help='host:port list, or one mongodb:// URI. Required.'),
    base.Option('db_name', types.String(), help='Database. Required.'),
    base.Option('cache_collection', types.String(),
                help='Collection of the values and locks. Required.'),
    base.Option('username', types.String(), help='User to authenticate.'),
    base.Option('password', types.String(), secret=True,
                help='Password of username.'),
    base.Option('auth_source', types.String(),
                help="Database holding the user (default: db_name)."),
    base.Option('replicaset_name', types.String(), help='Replica set name.'),
    base.Option('use_replica', types.Boolean(),
                help="Keystone's switch; true requires replicaset_name."),
    base.Option('read_preference', _read_preference,
                help='primary (default), secondary, nearest, ...'),
    base.Option('w', _write_concern,
                help='Write concern: members, "majority" or a tag set.'),
    dataclasses.replace(base.POOL_MAXSIZE, default=None,
                        help="Connections per server (default: pymongo's)."),
    *[dataclasses.replace(opt, default=None, aliases=(alias,))
      for opt, alias in zip(base.TLS[:4], ('ssl', 'ssl_ca_certs',
                                           'ssl_certfile', 'ssl_keyfile'))],
    base.Option('tls_cert_reqs',
                types.String(choices=_CERT_REQS, ignore_case=True),
                aliases=('ssl_cert_reqs',),
                help='NONE disables server certificate verification.'),
    base.Option('tls_allow_invalid_hostnames', types.Boolean(),
                help='Accept a server certificate for another host name.'),
    base.Option('server_selection_timeout', base.seconds(),
                help='Seconds to wait for a usable server before failing.'),
    dataclasses.replace(base.CONNECT_TIMEOUT, type=base.seconds(),
                        help="Seconds to connect (default: pymongo's)."),
    dataclasses.replace(base.SOCKET_TIMEOUT, type=base.seconds(),
                        default=None,
                        help="Seconds to wait for a reply; 0: no limit."),
    base.Option('enable_retry_client', types.Boolean(), True,
                help="pymongo's retryable reads and writes."),
    base.Option('son_manipulator', _son_manipulator,
                help="Keystone's; refused."),
)

REQUIRED = ('db_hosts', 'db_name', 'cache_collection')

#: Arguments pymongo takes as they are, by its names for them; durations
#: (its ``...MS`` keywords) are in seconds here, milliseconds there.
_CLIENT_KEYWORDS = {
    'auth_source': 'authSource', 'replicaset_name': 'replicaSet',
    'read_preference': 'readPreference', 'w': 'w',
    'pool_maxsize': 'maxPoolSize', 'tls_enabled': 'tls',
    'tls_cafile': 'tlsCAFile', 'tls_certfile': 'tlsCertificateKeyFile',
    'tls_allow_invalid_hostnames': 'tlsAllowInvalidHostnames',
    'server_selection_timeout': 'serverSelectionTimeoutMS',
    'connect_timeout': 'connectTimeoutMS', 'socket_timeout': 'socketTimeoutMS'}


def _utcnow() -> datetime.datetime:
    # Naive UTC is pymongo's own convention for BSON dates.
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _expiry(now: datetime.datetime, ttl: float) -> datetime.datetime:
    """``now + ttl`` rounded up to BSON's millisecond, never down."""
    at = now + datetime.timedelta(seconds=ttl)
    return at + datetime.timedelta(microseconds=-at.microsecond % 1000)


def _live(now: datetime.datetime) -> dict[str, ty.Any]:
    """Filter part matching documents that have not expired at ``now``."""
    # Also matches a document without expires_at: it never expires.
    return {'expires_at': {'$not': {'$lte': now}}}


class MongoBackend(base.Backend):
    """Values and locks in one MongoDB collection, via pymongo 4.

    The client is built at configure time with ``connect=False``, so
    configuring validates every argument but opens no connection (and a
    service may fork after configuring). Replica sets, read preference,
    write concern and TLS are pymongo's own features.
    """

    name = 'openstack.kvs.MongoDB'
    db_system = 'mongodb'
    options = OPTIONS
    expire_time_alias = 'mongo_ttl_seconds'
    distributed_lock = True

    # The server, its client and the client's errors.
    default_port = pymongo.MongoClient.PORT
    #: Builds the client from (hosts, **kwargs); tests wrap it, e.g. to
    #: pass pymongo ``event_listeners`` that count commands on the wire.
    client_factory: ty.Callable[..., ty.Any] = pymongo.MongoClient
    server_errors = (mongo_errors.PyMongoError,)
    too_large_errors = (mongo_errors.DocumentTooLarge,)
    # BSON strings are UTF-8: an unmangled key with a lone surrogate fails
    # to encode in the client, so no request carrying it is sent.
    key_errors = (UnicodeEncodeError,)
    #: Whether this backend made sure of the TTL index.
    _index_ready = False

    def __init__(self, arguments: ty.Mapping[str, ty.Any]) -> None:
        super().__init__(arguments)
        args = self.args
        missing = [name for name in REQUIRED if args[name] is None]
        if missing:
            raise exception.ConfigurationError(
                '%s requires argument(s) %s' % (self.name, ', '.join(missing)),
                argument=missing[0])
        hosts, kwargs = args['db_hosts'], self._client_arguments(args)
        self.db_name: str = args['db_name']
        self.collection_name: str = args['cache_collection']

        def connect() -> tuple[ty.Any, ty.Any]:
            client = type(self).client_factory(hosts, **kwargs)
            return client, client[self.db_name][self.collection_name]

        # pymongo resets an inherited client after a fork, but warns that
        # one opened before the fork is not entirely fork-safe: each
        # process builds its own (connect=False, so no I/O then). A
        # parent's client is dropped unclosed, as closing would end the
        # parent's server sessions.
        self._per_process(connect)
        try:
            self._clients.get()
        except (mongo_errors.PyMongoError, ValueError, TypeError,
                OSError) as exc:
            raise exception.ConfigurationError(
                '%s cannot be configured with these arguments: %s: %s'
                % (self.name, type(exc).__name__,
                   address.redact(str(exc), self.secrets))) from None

    @property
    def _collection(self) -> ty.Any:
        return self._clients.get()[1]

    def __repr__(self) -> str:
        return '<MongoBackend %s %s.%s>' % (
            ','.join(self._servers), self.db_name, self.collection_name)

    # --- configuration ---------------------------------------------------

    def _client_arguments(self, args: dict[str, ty.Any]) -> dict[str, ty.Any]:
        """pymongo's keyword arguments.

        Everything is validated here, before any connection: a wrong
        argument fails ``configure()``, not the first request.
        """
        base.check_readable(self.name, args)
        refusals = [
            ('password', args['password'] is not None and
             args['username'] is None, 'needs username'),
            ('use_replica', args['use_replica'] not in (
                None, bool(args['replicaset_name'])),
             'must be true exactly when replicaset_name is set'),
            ('tls_keyfile', args['tls_keyfile'] is not None and
             args['tls_keyfile'] != args['tls_certfile'],
             '(ssl_keyfile) must name the same file as tls_certfile: '
             'pymongo 4 reads the client certificate and its key from '
             'one PEM file; put both in tls_certfile'),
        ]
        for name, refused, why in refusals:
            if refused:
                raise exception.ConfigurationError(
                    'Argument %s of %s %s' % (name, self.name, why),
                    argument=name)
        uri_options = self._read_hosts(args['db_hosts'])
        kwargs: dict[str, ty.Any] = {
            'connect': False, 'document_class': dict, 'tz_aware': False}
        if args['username'] is not None:
            kwargs['username'] = args['username']
            kwargs['password'] = args['password']
            if args['auth_source'] is None and 'authsource' not in uri_options:
                # Keystone authenticated against db_name itself.
                kwargs['authSource'] = args['db_name']
        for name, keyword in _CLIENT_KEYWORDS.items():
            if args[name] is not None:
                kwargs[keyword] = (args[name] * 1000 if keyword.endswith('MS')
                                   else args[name])
        for keyword in ('retryReads', 'retryWrites'):
            if keyword.lower() not in uri_options:
                kwargs[keyword] = args['enable_retry_client']
        if args['tls_cert_reqs'] is not None:
            # For a client, OPTIONAL verifies like REQUIRED (as in ssl).
            kwargs['tlsAllowInvalidCertificates'] = (
                args['tls_cert_reqs'].upper().endswith('NONE'))
        return kwargs

    def _read_hosts(self, hosts: list[str]) -> set[str]:
        """Take the server labels from ``hosts``; return what its URI sets.

        The options a ``mongodb://`` URI sets are named in lower case.
        Labels are host:port (or the SRV name), never credentials.
        """
        if not hosts[0].startswith(_URI_SCHEMES):
            self._servers = hosts  # labels already
            return set()
        uri = urllib.parse.urlsplit(hosts[0])
        self._servers = [address.label(host, self.default_port) for host in
                         uri.netloc.rpartition('@')[2].split(',') if host]
        try:
            # pymongo only warns about a bad URI option and ignores it.
            return set(uri_parser.split_options(uri.query, warn=False)
                       if uri.query else ())
        except (mongo_errors.PyMongoError, ValueError) as exc:
            raise exception.ConfigurationError(
                'Argument db_hosts of %s has a bad URI option: %s'
                % (self.name, address.redact(str(exc), self.secrets)),
                argument='db_hosts') from None

    def describe_failure(self, exc: BaseException) -> str:
        code = getattr(exc, 'code', None)
        return '%s%s: %s (database %s)' % (
            type(exc).__name__, '' if code is None else ' (code %s)' % code,
            exc, self.db_name)

    def _close_client(self, client: tuple[ty.Any, ty.Any]) -> None:
        client[0].close()

    # --- plumbing --------------------------------------------------------

    def _document(self, key: str, value: bytes, now: datetime.datetime,
                  ttl: float | None) -> dict[str, ty.Any]:
        if (len(value) + len(key.encode('utf-8')) + _DOCUMENT_OVERHEAD >
                MAX_DOCUMENT_SIZE):
            raise exception.ValueTooLarge(
                '%s stores at most %d bytes per value; got %d'
                % (self.name, MAX_DOCUMENT_SIZE - _DOCUMENT_OVERHEAD,
                   len(value)))
        doc: dict[str, ty.Any] = {'value': value}
        if ttl:
            doc['expires_at'] = _expiry(now, ttl)
        return doc

    def _value(self, doc: ty.Mapping[str, ty.Any]) -> bytes:
        value = doc.get('value')
        if isinstance(value, bytes):
            return bytes(value)
        # Something else wrote this document. b'' is no value the store
        # ever writes, so the store reports it like any corrupt value
        # (IntegrityError naming the user's key) and decodes nothing.
        LOG.warning('%s: document in %s.%s has no binary value; treating '
                    'it as corrupt', self.name, self.db_name,
                    self.collection_name)
        return b''

    def _ensure_index(self) -> None:
        """Create the TTL index once, before this backend's first write.

        Correctness never depends on it (reads filter on expires_at); it
        only lets the server reclaim expired documents. If the server
        refuses (no createIndex privilege, a conflicting index), say so
        once and go on.
        """
        if self._index_ready:
            return
        # No lock: createIndex is idempotent, so threads racing here only
        # repeat it, and a lock held across this round trip would stay
        # held forever in a child forked meanwhile.
        try:
            self._collection.create_index('expires_at', expireAfterSeconds=0)
        except mongo_errors.OperationFailure as exc:
            if exc.code not in _INDEX_REFUSALS:
                raise
            LOG.warning('%s: cannot create the TTL index on %s.%s (%s, code '
                        '%s); expired documents stay on disk until it is '
                        'made: createIndex({expires_at: 1}, '
                        '{expireAfterSeconds: 0})', self.name, self.db_name,
                        self.collection_name, type(exc).__name__, exc.code)
        self._index_ready = True

    def _insert_unless_live(self, key: str, doc: dict[str, ty.Any],
                            now: datetime.datetime) -> bool:
        """Write ``doc`` under ``key`` unless a live document is there.

        One atomic server operation: it replaces a document whose
        expires_at has passed (the TTL monitor may not have removed it
        yet) and otherwise inserts; a live document makes the insert fail
        on the duplicate ``_id``.
        """
        self._ensure_index()
        try:
            self._collection.replace_one(
                {'_id': key, 'expires_at': {'$lte': now}}, doc, upsert=True)
        except mongo_errors.DuplicateKeyError:
            return False
        return True

    def stat_sources(self):
        return [(self.where, self._collection_stats)]

    def _collection_stats(self) -> dict[str, ty.Any]:
        """The collection's documents and size, and its TTL index.

        A MongoDB collection keeps no hit or eviction counts; its size
        has no limit here.
        """
        collection = self._collection
        try:
            # One document per shard; one in all on a replica set.
            shards = [found['storageStats'] for found in collection.aggregate(
                [{'$collStats': {'storageStats': {}}}])]
        except mongo_errors.OperationFailure as exc:
            if exc.code != 26:  # NamespaceNotFound: nothing written yet
                raise
            shards = []

        def total(name: str) -> int:
            return sum(shard.get(name, 0) for shard in shards)
        indexes = collection.index_information().values()
        return {'items': total('count'), 'bytes_used': total('size'),
                'storage_bytes': total('storageSize'),
                'collection': '%s.%s' % (self.db_name, self.collection_name),
                'ttl_index': any(index['key'] == [('expires_at', 1)] and
                                 'expireAfterSeconds' in index
                                 for index in indexes)}

    # --- the backend API -------------------------------------------------

    @base.translate_errors
    def get_serialized(self, key):
        doc = self._collection.find_one(
            {'_id': key, **_live(_utcnow())}, {'value': 1})
        return base.NO_VALUE if doc is None else self._value(doc)

    @base.translate_errors
    def get_serialized_multi(self, keys):
        unique = list(dict.fromkeys(keys))
        if not unique:
            return []
        # One round trip: at most len(unique) documents match, and
        # reaching the limit makes the server close the cursor with the
        # first batch. A batch_size alone leaves a full first batch's
        # cursor open, and pymongo then sends a getMore.
        found = {doc['_id']: self._value(doc) for doc in
                 self._collection.find(
                     {'_id': {'$in': unique}, **_live(_utcnow())},
                     {'value': 1}, limit=len(unique),
                     batch_size=len(unique))}
        return [found.get(key, base.NO_VALUE) for key in keys]

    @base.translate_errors
    def set_serialized(self, key, value, ttl=None):
        self._replace({key: value}, ttl)

    @base.translate_errors
    def set_serialized_multi(self, mapping, ttl=None):
        if mapping:
            self._replace(mapping, ttl)

    def _replace(self, mapping: ty.Mapping[str, bytes],
                 ttl: float | None) -> None:
        """Write every item, replacing what was there, in one request."""
        now = _utcnow()
        requests = [pymongo.ReplaceOne({'_id': key},
                                       self._document(key, value, now, ttl),
                                       upsert=True)
                    for key, value in mapping.items()]
        self._ensure_index()
        self._collection.bulk_write(requests, ordered=False)

    @base.translate_errors
    def delete_multi(self, keys):
        keys = list(dict.fromkeys(keys))
        if keys:
            self._collection.delete_many({'_id': {'$in': keys}})

    @base.translate_errors
    def delete_existing(self, key):
        # An expired document still waiting for the TTL monitor counts as
        # absent; it is left for the monitor.
        return self._collection.delete_one(
            {'_id': key, **_live(_utcnow())}).deleted_count == 1

    @base.translate_errors
    def add_serialized(self, key, value, ttl=None):
        now = _utcnow()
        return self._insert_unless_live(
            key, self._document(key, value, now, ttl), now)

    # The stored value is its own version: the write filters on the
    # exact bytes read, so the document keeps its shape.
    get_versioned = base.versioned_by_value

    @base.translate_errors
    def compare_and_set(self, key, token, value, ttl=None):
        now = _utcnow()
        if token is None:
            return self._insert_unless_live(
                key, self._document(key, value, now, ttl), now)
        where = {'_id': key, 'value': token, **_live(now)}
        if ttl is base.KEEP_EXPIRY:
            # Only the value changes; expires_at stays as it is.
            return self._collection.update_one(where, {
                '$set': self._document(key, value, now, None)
            }).matched_count == 1
        return self._collection.replace_one(
            where, self._document(key, value, now, ttl)).matched_count == 1

    @base.translate_errors
    def touch_serialized(self, key, ttl=None):
        now = _utcnow()
        change = ({'$set': {'expires_at': _expiry(now, ttl)}} if ttl else
                  {'$unset': {'expires_at': ''}})
        return self._collection.update_one(
            {'_id': key, **_live(now)}, change).matched_count == 1

    @base.translate_errors
    def acquire_lock(self, key, token, ttl):
        now = _utcnow()
        doc: dict[str, ty.Any] = {'token': token}
        if ttl:
            doc['expires_at'] = _expiry(now, ttl + base.LOCK_EXPIRY_MARGIN)
        return self._insert_unless_live(key, doc, now)

    @base.translate_errors
    def release_lock(self, key, token):
        return self._collection.delete_one(
            {'_id': key, 'token': token}).deleted_count == 1
