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

"""``oslo-kvs --group``: the command reads a service's store group.

The same options and code as ``configure_from_conf``, so an operator
checks the store a service will build from the very same file.
"""

from oslo_kvs.cmd import main

KEY = 'group-protection-key-never-printed-0123456789'
PASSWORD = 'group-password-never-printed-42'


def run(tmp_path, capsys, text, *argv):
    path = tmp_path / 'service.conf'
    path.write_text(text)
    status = main.main(['--config-file', str(path)] + list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_exercise_on_a_service_group(tmp_path, capsys, redis_server):
    text = ('[token_store]\nbackend = openstack.kvs.Redis\n'
            'backend_argument = url:%s\nexpire_time = 60\n'
            'value_protection = encrypt\nprotection_keys = %s\n'
            % (redis_server.url, KEY))
    status, out, err = run(tmp_path, capsys, text, '--group', 'token_store',
                           'exercise', '--rounds', '2')
    assert status == 0, err
    assert redis_server.address in out
    assert KEY not in out + err
    # Without --group the command looks at [kvs]: the memory backend.
    status, out, err = run(tmp_path, capsys, text, 'exercise',
                           '--rounds', '2')
    assert status == 0, err
    assert 'this process' in out


def test_doctor_and_errors_name_the_group(tmp_path, capsys):
    text = ('[token_store]\nbackend = openstack.kvs.Redis\n'
            'backend_argument = password:%s\n'
            'backend_argument = socket_timeout:soon\n' % PASSWORD)
    status, out, err = run(tmp_path, capsys, text, '--group', 'token_store',
                           'doctor')
    assert status != 0
    assert 'socket_timeout' in out + err
    assert PASSWORD not in out + err
    status, out, err = run(tmp_path, capsys, text, '--group', 'token_store',
                           'exercise', '--rounds', '1')
    assert status != 0
    assert '[token_store] backend_argument' in err
    assert PASSWORD not in out + err


def test_kvs_backing_store_still_works(tmp_path, capsys, redis_server):
    text = ('[kvs]\nbacking_store = openstack.kvs.Redis\n'
            'backend_argument = url:%s\n' % redis_server.url)
    status, out, err = run(tmp_path, capsys, text, 'exercise',
                           '--rounds', '1')
    assert status == 0, err
    assert redis_server.address in out
