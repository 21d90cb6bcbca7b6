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

"""Side-by-side benchmarks: oslo_kvs against raw clients and oslo.cache.

Run with ``tox -e bench`` or ``python -m oslo_kvs_tests.bench [SUITE...]``.
Each suite module (``memory``, ``memcached``, ``redis``, ...) has a
``run(rounds)`` function returning :class:`Result` rows; the contenders of
a suite are measured interleaved, in one run on the same server, so the
ratios stay meaningful on a noisy shared machine. Absolute times are
printed for context only; read the ratios.
"""
