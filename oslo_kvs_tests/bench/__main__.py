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

"""``python -m oslo_kvs_tests.bench [SUITE...] [--rounds N] [--cpu N]``.

By default the benchmark and the servers it starts share one CPU (the
last one this process may use); ``--no-pin`` leaves them to the kernel.
"""

import argparse
import importlib
import os
import platform
import sys

from oslo_kvs_tests.bench import common

SUITES = ['memory', 'memcached', 'redis', 'mongo', 'protection', 'observe',
          'atomic', 'near']


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('suites', nargs='*', default=SUITES)
    parser.add_argument('--rounds', type=int, default=3000,
                        help='calls per contender and operation (a tenth '
                             'for operations on 100 keys)')
    parser.add_argument('--repeat', type=int, default=1,
                        help='run the suites this many times')
    parser.add_argument('--cpu', type=int,
                        default=max(os.sched_getaffinity(0)),
                        help='the CPU to pin to (default: %(default)s)')
    parser.add_argument('--no-pin', dest='cpu', action='store_const',
                        const=None, help='do not pin anything')
    args = parser.parse_args(argv)
    common.pin(args.cpu)
    print('python %s; pinned to CPU %s' % (
        platform.python_version(),
        'none' if args.cpu is None else args.cpu))
    for _ in range(args.repeat):
        for suite in args.suites:
            try:
                module = importlib.import_module(
                    'oslo_kvs_tests.bench.' + suite)
            except ModuleNotFoundError:
                print('suite %s: not available' % suite)
                continue
            common.report(module.run(args.rounds), sys.stdout)
    return 0


if __name__ == '__main__':
    sys.exit(main())
