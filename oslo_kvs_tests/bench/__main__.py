"""``python -m oslo_kvs_tests.bench [SUITE...] [--rounds N]``."""

import argparse
import importlib
import sys

from oslo_kvs_tests.bench import common

SUITES = ['memory', 'memcached', 'redis', 'mongo', 'protection']


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('suites', nargs='*', default=SUITES)
    parser.add_argument('--rounds', type=int, default=3000)
    args = parser.parse_args(argv)
    for suite in args.suites:
        try:
            module = importlib.import_module('oslo_kvs_tests.bench.' + suite)
        except ModuleNotFoundError:
            print('suite %s: not available' % suite)
            continue
        common.report(module.run(args.rounds), sys.stdout)
    return 0


if __name__ == '__main__':
    sys.exit(main())
