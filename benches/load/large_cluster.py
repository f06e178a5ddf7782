"""Writes Lists of 20 namespaces, 10,000 Services and 2,000 StatefulSets (not Raft
workloads: the webhook caches every StatefulSet all the same), 500 objects a file."""
import json
import os
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"large-{n}"}} for n in range(20)]
for n in range(20):
    ns = f"large-{n}"
    for i in range(500):
        objects.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"svc-{i}", "namespace": ns, "labels": {"app": f"app-{i % 100}"}},
            "spec": {"clusterIP": "None", "selector": {"app": f"app-{i % 100}"},
                     "ports": [{"name": "peer", "port": 2380}]},
        })
    for i in range(100):
        objects.append({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": f"sts-{i}", "namespace": ns},
            "spec": {
                "serviceName": f"svc-{i}", "replicas": 0,
                "selector": {"matchLabels": {"app": f"app-{i}"}},
                "template": {
                    "metadata": {"labels": {"app": f"app-{i}"}},
                    "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
                                             "ports": [{"name": "peer", "containerPort": 2380}]}]},
                },
            },
        })
for k in range(0, len(objects), 500):
    with open(f"{out}/{k // 500:03d}.json", "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": objects[k:k + 500]}, f)
