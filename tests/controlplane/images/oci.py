#!/usr/bin/env python3
"""Writes a single-layer OCI image archive that `ctr images import` loads, without a
Docker daemon or a registry. The output is reproducible: the same files and settings
give the same bytes, so run.sh can cache images by content.

  oci.py OUT.tar --ref REF --rootfs DIR [--user U] [--entrypoint JSON] [--cmd JSON] [--env K=V]...
  oci.py OUT.tar --ref REF --dockerfile FILE --stage-root DIR

With --dockerfile, the image is the Dockerfile's final stage: it must start `FROM scratch`,
and `COPY --from=<stage> SRC DEST` reads SRC from DIR, which stands in for the earlier
stage's filesystem (the same files, built on the host). Any instruction this script does
not know is an error, so the Dockerfile stays the one recipe for the image.
"""

import argparse
import hashlib
import io
import json
import os
import shlex
import sys
import tarfile


def fail(message):
    sys.exit(f"oci.py: {message}")


def final_stage(path):
    """The instructions after the last FROM, as (keyword, argument) pairs."""
    lines, pending = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            lines.append(pending + line)
            pending = ""
    stage = []
    for line in lines:
        keyword, _, argument = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage = []
        stage.append((keyword, argument.strip()))
    return stage


def exec_form(argument, keyword):
    try:
        value = json.loads(argument)
    except json.JSONDecodeError:
        fail(f"{keyword} must use the JSON (exec) form, got {argument!r}")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        fail(f"{keyword} must be a JSON list of strings, got {argument!r}")
    return value


def from_dockerfile(path, stage_root):
    """Reads the final stage into (files, config): files are (source, destination) pairs."""
    stage = final_stage(path)
    if not stage or stage[0] != ("FROM", "scratch"):
        fail(f"the final stage of {path} must start with `FROM scratch`")
    files, config = [], {}
    for keyword, argument in stage[1:]:
        if keyword == "COPY":
            words = shlex.split(argument)
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            if len(paths) != 2 or not all(f.startswith("--from=") for f in flags):
                fail(f"only `COPY --from=STAGE SRC DEST` is supported, got {argument!r}")
            files.append((os.path.join(stage_root, paths[0].lstrip("/")), paths[1]))
        elif keyword == "USER":
            config["User"] = argument
        elif keyword == "ENTRYPOINT":
            config["Entrypoint"] = exec_form(argument, keyword)
        elif keyword == "CMD":
            config["Cmd"] = exec_form(argument, keyword)
        elif keyword == "ENV":
            key, _, value = argument.partition("=")
            config.setdefault("Env", []).append(f"{key}={value}")
        elif keyword == "WORKDIR":
            config["WorkingDir"] = argument
        elif keyword == "LABEL":
            for pair in shlex.split(argument):
                key, _, value = pair.partition("=")
                config.setdefault("Labels", {})[key] = value
        elif keyword == "EXPOSE":
            for port in argument.split():
                config.setdefault("ExposedPorts", {})[port if "/" in port else port + "/tcp"] = {}
        else:
            fail(f"{keyword} in the final stage of {path} is not supported by this image writer")
    return files, config


def add_tree(tar, source, destination):
    """Adds source (a file or a directory) at destination, with fixed owners and times."""
    def add(path, name):
        info = tar.gettarinfo(path, arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        if info.isreg():
            with open(path, "rb") as f:
                tar.addfile(info, f)
        else:
            tar.addfile(info)

    name = destination.strip("/")
    if os.path.isdir(source):
        if name:
            add(source, name)
        for root, dirs, names in os.walk(source):
            dirs.sort()
            relative = os.path.relpath(root, source)
            for entry in sorted(dirs) + sorted(names):
                inner = os.path.normpath(os.path.join(name, relative, entry)).lstrip("/")
                add(os.path.join(root, entry), inner)
    else:
        if destination.endswith("/"):
            name = os.path.join(name, os.path.basename(source))
        add(source, name)


def blob(layout, data, media_type):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def write_image(out, ref, files, config):
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for source, destination in files:
            if not os.path.exists(source):
                fail(f"{source} does not exist")
            add_tree(tar, source, destination)
    layer = layer.getvalue()

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        entries = {}

        def put(name, data):
            entries[name] = data

        layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
        image_config = {
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
        config_bytes = json.dumps(image_config, sort_keys=True).encode()
        layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar",
                      "digest": layer_digest, "size": len(layer)}
        config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": "sha256:" + hashlib.sha256(config_bytes).hexdigest(),
                       "size": len(config_bytes)}
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config_desc, "layers": [layer_desc]}
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        manifest_desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                         "digest": "sha256:" + hashlib.sha256(manifest_bytes).hexdigest(),
                         "size": len(manifest_bytes),
                         "annotations": {"io.containerd.image.name": ref,
                                         "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1]}}
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": [manifest_desc]}
        put("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        put("index.json", json.dumps(index, sort_keys=True).encode())
        for data in (layer, config_bytes, manifest_bytes):
            put("blobs/sha256/" + hashlib.sha256(data).hexdigest(), data)
        for name in ["blobs", "blobs/sha256"]:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name in sorted(entries):
            info = tarfile.TarInfo(name)
            info.size = len(entries[name])
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(entries[name]))
    with open(out + ".partial", "wb") as f:
        f.write(archive.getvalue())
    os.replace(out + ".partial", out)
    print(manifest_desc["digest"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--ref", required=True, help="fully qualified, e.g. docker.io/library/x:1")
    parser.add_argument("--rootfs", help="directory that becomes the image's /")
    parser.add_argument("--user")
    parser.add_argument("--entrypoint", type=json.loads)
    parser.add_argument("--cmd", type=json.loads)
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--dockerfile")
    parser.add_argument("--stage-root")
    args = parser.parse_args()
    if args.dockerfile:
        if not args.stage_root:
            fail("--dockerfile needs --stage-root")
        files, config = from_dockerfile(args.dockerfile, args.stage_root)
    elif args.rootfs:
        files = [(args.rootfs, "/")]
        config = {}
        if args.user:
            config["User"] = args.user
        if args.entrypoint:
            config["Entrypoint"] = args.entrypoint
        if args.cmd:
            config["Cmd"] = args.cmd
        if args.env:
            config["Env"] = args.env
    else:
        fail("give --rootfs or --dockerfile")
    write_image(args.out, args.ref, files, config)


if __name__ == "__main__":
    main()
