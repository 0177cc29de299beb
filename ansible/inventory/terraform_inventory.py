#!/usr/bin/env python3
"""Ansible dynamic inventory built from Terraform's `ansible` output.

Sources, first match wins:
  DSA_TF_OUTPUT_JSON  a file holding `terraform output -json ansible`
                      (or the whole `terraform output -json`)
  DSA_TF_DIR          a Terraform root to run `terraform output` in
                      (default: ../../terraform/example beside this file);
                      the binary is $DSA_TERRAFORM (default: terraform)

Groups: dsa_nodes (all), dsa_head (node 0), dsa_workers (the rest).
Hosts are instance IDs reached through SSM Session Manager
(amazon.aws.aws_ssm): no SSH port is open to the nodes from outside.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def load_outputs():
    path = os.environ.get("DSA_TF_OUTPUT_JSON")
    if path:
        with open(path) as f:
            data = json.load(f)
    else:
        tf_dir = os.environ.get("DSA_TF_DIR", os.path.join(HERE, "..", "..", "terraform", "example"))
        tf = os.environ.get("DSA_TERRAFORM", "terraform")
        try:
            out = subprocess.run(
                [tf, "-chdir=" + tf_dir, "output", "-json", "ansible"],
                check=True, capture_output=True, text=True,
            ).stdout
        except (OSError, subprocess.CalledProcessError) as e:
            sys.stderr.write("terraform_inventory: no Terraform outputs (%s); empty inventory\n" % e)
            return None
        data = json.loads(out)
    if "ansible" in data and isinstance(data["ansible"], dict) and "value" in data["ansible"]:
        data = data["ansible"]["value"]
    return data


def build(data):
    inv = {
        "_meta": {"hostvars": {}},
        "all": {"children": ["dsa_nodes"]},
        "dsa_nodes": {"children": ["dsa_head", "dsa_workers"], "vars": {}},
        "dsa_head": {"hosts": []},
        "dsa_workers": {"hosts": []},
    }
    if not data:
        return inv
    inv["dsa_nodes"]["vars"] = {
        "ansible_connection": "amazon.aws.aws_ssm",
        "ansible_aws_ssm_region": data["region"],
        "ansible_aws_ssm_bucket_name": data["ssm_bucket"],
        "dsa_aws_region": data["region"],
        "dsa_weights_s3_uri": data["weights_s3_uri"],
        "dsa_api_keys_secret_name": data["api_keys_secret_name"],
        "dsa_head_port": data["head_port"],
        "dsa_data_disk_mode": data["weights_storage"],
        # The plugin's default (60 s) fails every longer task: driver, CUDA
        # and EFA installs, the build.  DSA_SSM_TIMEOUT overrides it.
        "ansible_aws_ssm_timeout": int(os.environ.get("DSA_SSM_TIMEOUT", "3600")),
    }
    # Outputs of newer Terraform roots; group_vars/all.yml has the defaults.
    for out, var in (("served_model_name", "dsa_served_model_name"),
                     ("lb_idle_timeout_seconds", "dsa_lb_idle_timeout")):
        if out in data:
            inv["dsa_nodes"]["vars"][var] = data[out]
    for i, node in enumerate(data["nodes"]):
        host = node["instance_id"]
        group = "dsa_head" if node["role"] == "head" else "dsa_workers"
        inv[group]["hosts"].append(host)
        inv["_meta"]["hostvars"][host] = {
            "dsa_node_index": i,
            "dsa_private_ip": node["private_ip"],
            "dsa_weights_volume_id": node.get("weights_volume_id", ""),
        }
    return inv


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--host":
        print("{}")
        return 0
    print(json.dumps(build(load_outputs()), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
