"""Validate rendered Kubernetes manifests: built-in kinds with kubernetes-validate (strict),
custom resources against the JSON Schemas in deploy/schemas. Exit 1 on any problem.

Usage: k8s_validate.py --kubernetes-version 1.33.0 --schemas deploy/schemas FILE...
"""

import argparse
import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

# Custom resources: (apiVersion, kind) -> schema file in --schemas.
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubernetes-version", required=True)
    parser.add_argument("--schemas", required=True, type=pathlib.Path)
    parser.add_argument("files", nargs="+", type=pathlib.Path)
    args = parser.parse_args()
    problems = 0
    checked = 0
    for path in args.files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            key = (doc.get("apiVersion"), doc.get("kind"))
            what = f"{path.name}: {key[1]}/{doc.get('metadata', {}).get('name')}"
            checked += 1
            try:
                if key in CUSTOM:
                    schema = json.loads((args.schemas / CUSTOM[key]).read_text())
                    jsonschema.validate(doc, schema)
                else:
                    kubernetes_validate.validate(doc, args.kubernetes_version, strict=True)
            except jsonschema.ValidationError as e:
                problems += 1
                print(f"FAIL {what}: {e.message} at /{'/'.join(map(str, e.absolute_path))}")
            except kubernetes_validate.SchemaNotFoundError as e:
                problems += 1
                print(f"FAIL {what}: no schema for {key} (add one to deploy/schemas): {e}")
            except kubernetes_validate.ValidationError as e:
                problems += 1
                print(f"FAIL {what}: {e.message} at /{'/'.join(map(str, e.path))}")
            else:
                print(f"ok   {what}")
    if checked == 0:
        print("FAIL: nothing to validate")
        return 1
    print(f"{checked} resources, {problems} problems (Kubernetes {args.kubernetes_version})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
