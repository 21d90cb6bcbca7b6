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

"""Print a pip constraints file pinning every requirement to its minimum.

``python tools/minimums.py requirements.txt`` turns each ``name>=X`` line
into ``name==X``, so that ``tox -e minimums`` installs exactly the oldest
versions the project declares it supports. A requirement without a lower
bound is an error: its minimum could not be tested.
"""

import re
import sys

_LOWER = re.compile(r'^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^]]*\])?'
                    r'\s*[^#;]*?>=\s*([^,;#\s]+)')


def constraints(lines):
    """``name==minimum`` for every requirement line."""
    pins = []
    for line in lines:
        text = line.split('#', 1)[0].strip()
        if not text or text.startswith('-'):
            continue
        match = _LOWER.match(text)
        if match is None:
            raise SystemExit('no ">=" lower bound in requirement %r' % text)
        pins.append('%s==%s' % match.groups())
    return pins


def main(argv):
    for path in argv[1:]:
        with open(path) as requirements:
            for pin in constraints(requirements):
                print(pin)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
