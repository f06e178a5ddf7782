#!/usr/bin/env python3
"""Regenerates the AdmissionReview fixtures in this folder from examples/.

The fixtures are committed and reviewed like code; run this only when the examples
change:  python3 tests/data/make_reviews.py
"""
import copy
import json
import pathlib

import yaml

HERE = pathlib.Path(__file__).parent
EXAMPLES = HERE.parent.parent / "examples"


def docs(name):
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def first(name, kind):
    return next(d for d in docs(name) if d["kind"] == kind)


def review(uid, operation, obj, old=None, resource="statefulsets", sub=None, kind=None, name=None):
    kind = kind or {"group": "apps", "version": "v1", "kind": "StatefulSet"}
    request = {
        "uid": uid,
        "kind": kind,
        "resource": {"group": kind["group"], "version": kind["version"], "resource": resource},
        "requestKind": kind,
        "requestResource": {"group": kind["group"], "version": kind["version"], "resource": resource},
        "name": name or (obj or old)["metadata"]["name"],
        "namespace": "default",
        "operation": operation,
        "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
        "object": obj,
        "oldObject": old,
        "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }
    if sub:
        request["subResource"] = sub
        request["requestSubResource"] = sub
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def with_ns(obj):
    obj = copy.deepcopy(obj)
    obj["metadata"]["namespace"] = "default"
    return obj


def write(name, value):
    (HERE / name).write_text(json.dumps(value, indent=2, sort_keys=False) + "\n")


etcd = with_ns(first("etcd.yaml", "StatefulSet"))
write("create-etcd.json", review("11111111-0000-0000-0000-000000000001", "CREATE", etcd))

even = with_ns(first("denied-even-replicas.yaml", "StatefulSet"))
write("create-even-replicas.json", review("11111111-0000-0000-0000-000000000002", "CREATE", even))


def scale(replicas):
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "etcd", "namespace": "default"},
        "spec": {"replicas": replicas},
        "status": {"replicas": 3, "selector": "app=etcd"},
    }


autoscaling = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
for uid, (old, new) in ((4, (3, 4)), (5, (3, 5)), (6, (7, 1))):
    r = review(f"11111111-0000-0000-0000-00000000000{uid}", "UPDATE", scale(new), old=scale(old),
               sub="scale", kind=autoscaling)
    # The scale subresource is requested on apps/v1 statefulsets.
    r["request"]["resource"] = {"group": "apps", "version": "v1", "resource": "statefulsets"}
    r["request"]["kind"] = autoscaling
    write(f"scale-{old}-to-{new}.json", r)

delete = review("11111111-0000-0000-0000-000000000007", "DELETE", None, old=etcd)
delete["request"]["options"] = {"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions"}
write("delete-etcd.json", delete)

deployment = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "labels": {"raft-injector.io/raft": "true"}},
    "spec": {"selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
}
write("create-deployment.json", review("11111111-0000-0000-0000-000000000008", "CREATE", deployment,
                                       resource="deployments",
                                       kind={"group": "apps", "version": "v1", "kind": "Deployment"}))

unlabelled = copy.deepcopy(etcd)
del unlabelled["metadata"]["labels"]["raft-injector.io/raft"]
unlabelled["spec"]["replicas"] = 4
write("create-unlabelled.json", review("11111111-0000-0000-0000-000000000009", "CREATE", unlabelled))

v1beta1 = review("11111111-0000-0000-0000-000000000010", "CREATE", etcd)
v1beta1["apiVersion"] = "admission.k8s.io/v1beta1"
write("create-v1beta1.json", v1beta1)
