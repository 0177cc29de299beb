"""Runs one lm-evaluation-harness task against an OpenAI-compatible
/v1/completions server through lm_eval's `local-completions` model and
writes lm_eval's results (metrics, sample counts and logged samples) as one
JSON file.  Runs in the venv of tools/pyenv-lmeval.sh; driven by
test_lm_eval.py.

lm_eval's documented Python entry point (simple_evaluate) is used rather
than its CLI only so that the task index holds our task folder alone: the
CLI indexes the thousands of bundled task YAMLs first (~13 s of CPU).

Usage: lm_eval_run.py TASK TASK_DIR BASE_URL TOKENIZER_DIR OUT_JSON"""
import json
import sys

import lm_eval
from lm_eval.tasks import TaskManager
from lm_eval.utils import handle_non_serializable


def main():
    task, task_dir, base_url, tokenizer, out = sys.argv[1:6]
    model_args = {
        "model": "tiny", "base_url": base_url + "/v1/completions",
        "tokenizer_backend": "huggingface", "tokenizer": tokenizer,
        "tokenized_requests": True, "num_concurrent": 1, "max_retries": 1,
    }
    res = lm_eval.simple_evaluate(
        model="local-completions", model_args=model_args, tasks=[task],
        task_manager=TaskManager(include_path=task_dir, include_defaults=False),
        log_samples=True, random_seed=1234, numpy_random_seed=1234)
    with open(out, "w") as f:
        json.dump({"results": res["results"], "n-samples": res["n-samples"],
                   "samples": res["samples"]}, f, default=handle_non_serializable)


if __name__ == "__main__":
    main()
