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

"""What the sample service stores, shared by the service and the client.

The client checks every reply against these, so they live in one place
that imports nothing of the service (importing the service configures
its stores).
"""

import typing as ty

#: The environment variable naming the service's JSON configuration.
CONFIG_VARIABLE = 'OSLO_KVS_DEPLOY_CONFIG'


def token_value(user: str, token: str) -> dict[str, str]:
    """The value stored under ``token``, created for ``user``."""
    return {'user': user, 'token': token}


def region_catalog(region: str) -> dict[str, ty.Any]:
    """The catalog of ``region``: a deterministic function of its name."""
    return {'region': region,
            'endpoints': ['https://%s.%s.example.org/' % (service, region)
                          for service in ('identity', 'compute', 'image')]}
