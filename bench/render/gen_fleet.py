#!/usr/bin/env python3
"""Generates a synthetic fleet for the render benchmark: N clusters, each
rendered from one Cluster template and four InstanceGroup templates, with
base, environment and cluster values layers and a snippet."""
import pathlib
import sys

CLUSTER = """\
apiVersion: kops.k8s.io/v1alpha2
kind: Cluster
metadata:
  name: {{ clusterName }}
spec:
  api:
    loadBalancer:
      type: Public
  channel: {{ channel }}
  cloudProvider: aws
  configBase: s3://kops-state/{{ clusterName }}
  etcdClusters:
{%- for etcd in ["main", "events"] %}
  - name: {{ etcd }}
    etcdMembers:
{%- for zone in zones %}
    - instanceGroup: control-plane-{{ zone }}
      name: {{ zone }}
{%- endfor %}
{%- endfor %}
  kubernetesApiAccess: {{ apiAccess | tojson }}
  kubernetesVersion: {{ kubernetesVersion }}
  networkCIDR: {{ network.cidr }}
  networking:
    cilium: {}
  nonMasqueradeCIDR: 100.64.0.0/10
  sshAccess: {{ sshAccess | tojson }}
  subnets:
{%- for zone in zones %}
  - cidr: {{ network.prefix }}.{{ loop.index * 32 }}.0/19
    name: {{ zone }}
    type: Private
    zone: {{ zone }}
{%- endfor %}
  topology:
    dns:
      type: Public
"""

IG = """\
apiVersion: kops.k8s.io/v1alpha2
kind: InstanceGroup
metadata:
  name: {{ name }}
  labels:
    kops.k8s.io/cluster: {{ clusterName }}
spec:
  image: {{ image }}
  machineType: {{ groups[key].machineType | default(defaultMachineType) }}
  maxSize: {{ groups[key].max }}
  minSize: {{ groups[key].min }}
  role: {{ groups[key].role }}
  subnets: {{ zones | tojson }}
  nodeLabels:
    team: {{ team }}
  additionalUserData:
  - name: bootstrap.sh
    type: text/x-shellscript
    content: |
      {{ include("bootstrap.sh", {"group": key, "cluster": clusterName}) | indent(6) }}
"""

SNIPPET = """\
#!/bin/sh
echo "bootstrapping {{ group }} of {{ cluster }}"
sysctl -w net.ipv4.ip_forward=1
"""

BASE = """\
channel: stable
image: 099720109477/ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250101
defaultMachineType: t3.large
apiAccess: [0.0.0.0/0]
sshAccess: [10.0.0.0/8]
team: platform
groups:
  control-plane: {role: Master, min: 1, max: 1, machineType: m6i.large}
  nodes-a: {role: Node, min: 2, max: 10}
  nodes-b: {role: Node, min: 2, max: 10}
  nodes-c: {role: Node, min: 0, max: 5, machineType: c6i.2xlarge}
"""


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    (out / "templates/ig").mkdir(parents=True, exist_ok=True)
    (out / "templates/snippets").mkdir(parents=True, exist_ok=True)
    (out / "values/env").mkdir(parents=True, exist_ok=True)
    (out / "values/clusters").mkdir(parents=True, exist_ok=True)
    (out / "templates/cluster.yaml.j2").write_text(CLUSTER)
    for i, key in enumerate(["control-plane", "nodes-a", "nodes-b", "nodes-c"]):
        body = "{%- set key = '" + key + "' %}{%- set name = key %}\n" + IG
        (out / f"templates/ig/{i:02d}-{key}.yaml.j2").write_text(body)
    (out / "templates/snippets/bootstrap.sh").write_text(SNIPPET)
    (out / "values/base.yaml").write_text(BASE)
    (out / "values/env/dev.yaml").write_text("kubernetesVersion: 1.34.1\n")
    (out / "values/env/prod.yaml").write_text("kubernetesVersion: 1.33.4\ngroups:\n  nodes-a: {min: 3}\n")
    clusters = []
    for n in range(count):
        env = "dev" if n % 2 == 0 else "prod"
        name = f"c{n:03d}.{env}.k8s.example.com"
        (out / f"values/clusters/{name}.yaml").write_text(
            f"zones: [eu-west-1a, eu-west-1b, eu-west-1c]\n"
            f"network: {{cidr: 10.{n % 250}.0.0/16, prefix: 10.{n % 250}}}\n"
        )
        clusters.append(f"  - name: {name}\n    environment: {env}\n    values: [values/clusters/{name}.yaml]\n")
    (out / "kopsci.yaml").write_text(
        "templates: [templates/cluster.yaml.j2, templates/ig]\n"
        "snippets: [templates/snippets]\n"
        "values: [values/base.yaml]\n"
        "environments:\n  dev:\n    values: [values/env/dev.yaml]\n"
        "  prod:\n    values: [values/env/prod.yaml]\n    needs: [dev]\n"
        "clusters:\n" + "".join(clusters)
    )


if __name__ == "__main__":
    main()
