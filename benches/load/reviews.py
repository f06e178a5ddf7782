"""The two AdmissionReviews `make bench-load` sends: the CREATE of the etcd example from
tests/data, and an UPDATE of the already injected object (a re-apply: object and oldObject
injected, about 10 KB), which is what most writes to a running cluster look like."""
import json
import subprocess
import sys

repo, raft, out = sys.argv[1:4]
create = json.load(open(f"{repo}/tests/data/create-etcd.json"))
json.dump(create, open(f"{out}/create.json", "w"))

injected_yaml = subprocess.run(
    [raft, "inject", "-n", "default", "-f", f"{repo}/examples/etcd.yaml"],
    check=True, capture_output=True, text=True).stdout
# kubectl turns the YAML into JSON, so no YAML library is needed.
text = subprocess.run(["kubectl", "create", "--dry-run=client", "-o", "json", "-f", "-"],
                      input=injected_yaml, check=True, capture_output=True, text=True).stdout
decoder, at, objects = json.JSONDecoder(), 0, []
while text[at:].strip():
    obj, at = decoder.raw_decode(text, at + len(text[at:]) - len(text[at:].lstrip()))
    objects.append(obj)
sts = next(o for o in objects if o["kind"] == "StatefulSet")
sts["metadata"]["namespace"] = "default"

update = json.loads(json.dumps(create))
request = update["request"]
request["uid"] = "22222222-0000-0000-0000-000000000001"
request["operation"] = "UPDATE"
request["object"] = sts
request["oldObject"] = sts
request["options"] = {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"}
json.dump(update, open(f"{out}/update.json", "w"))
print(f"reviews: create {len(json.dumps(create))} bytes, update {len(json.dumps(update))} bytes",
      file=sys.stderr)
