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

"""A sample service on oslo_kvs, served by real WSGI servers under load.

``service`` is the WSGI application (a token service with a per-user index
and a memoized catalog, its stores configured and used at import, as a
service warming its caches would); ``load`` is the HTTP load client that
checks every reply; ``launchers`` starts the WSGI servers, and ``serve``
is the program of the modes that are a Python program (oslo.service's
ProcessLauncher, eventlet); ``test_servers`` runs the load against each
server mode, with and without server faults.
"""
