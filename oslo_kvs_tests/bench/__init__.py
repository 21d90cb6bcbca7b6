"""Side-by-side benchmarks: oslo_kvs against raw clients and oslo.cache.

Run with ``tox -e bench`` or ``python -m oslo_kvs_tests.bench [SUITE...]``.
Each suite module (``memory``, ``memcached``, ``redis``, ...) has a
``run(rounds)`` function returning :class:`Result` rows; the contenders of
a suite are measured interleaved, in one run on the same server, so the
ratios stay meaningful on a noisy shared machine. Absolute times are
printed for context only; read the ratios.
"""
