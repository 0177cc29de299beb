"""lm-evaluation-harness (PyPI lm_eval, an evaluation client no one here
wrote) drives dsa-head through its `local-completions` model, as people
evaluate a vLLM server: one loglikelihood task (multiple choice: echo +
logprobs requests on /v1/completions) and one generate_until task, both
defined in tests/data/lm_eval/ over local jsonl files, fully offline.
Each must complete without errors and write its metrics.

lm_eval_run.py runs lm_eval inside its own venv.
Environment: DSA_HEAD, DSA_MODEL (tiny checkpoint, whose tokenizer.json
lm_eval loads with transformers), DSA_LMEVAL_PY (python of the venv made by
tools/pyenv-lmeval.sh).  Run by tests/integration/run_head_tests.sh."""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DSA_MODEL_SLOW", os.environ.get("DSA_MODEL", ""))
from test_head import KEY, SCALE, Server  # noqa: E402
from sanitizers import sanitizer_reports  # noqa: E402

MODEL = os.environ["DSA_MODEL"]
LMEVAL_PY = os.environ["DSA_LMEVAL_PY"]
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "lm_eval")


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class LmEval(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # without prefix caching a repeated prompt is computed the same way
        # again, so the cross-checks below can ask for exact equality
        cls.srv = Server("--served-model-name", "tiny", "--no-enable-prefix-caching")
        cls.tmp = tempfile.mkdtemp(prefix="dsa-lm-eval-")

    @classmethod
    def tearDownClass(cls):
        reports = sanitizer_reports(cls.srv)
        cls.srv.stop()
        if reports:
            # the server's own ASan/UBSan findings (its log is not the test's output)
            print("\n".join(reports), file=sys.stderr)
            raise AssertionError("dsa-head logged %d sanitizer report(s)" % len(reports))
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_task(self, task):
        """Runs lm_eval on one task (lm_eval_run.py in the lm_eval venv);
        returns (results, samples) as lm_eval reported them."""
        out = os.path.join(self.tmp, task + ".json")
        env = dict(os.environ)
        env.update({
            "OPENAI_API_KEY": KEY,       # local-completions sends it as a Bearer key
            "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_HOME": os.path.join(self.tmp, "hf"), "TOKENIZERS_PARALLELISM": "false",
        })
        cmd = [LMEVAL_PY, os.path.join(HERE, "lm_eval_run.py"), task, DATA, self.srv.base,
               MODEL, out]
        # data_files in the task YAMLs are relative to the working directory
        p = subprocess.run(cmd, cwd=DATA, env=env, capture_output=True, text=True,
                           timeout=600 * SCALE)
        self.assertEqual(p.returncode, 0, "lm_eval failed:\n" + p.stdout[-3000:] +
                         p.stderr[-6000:] + "\nserver log:\n" + self.srv.logtext()[-2000:])
        with open(out) as f:
            res = json.load(f)
        return res, res["samples"][task]

    def tokenize(self, text):
        req = urllib.request.Request(
            self.srv.base + "/tokenize",
            data=json.dumps({"prompt": text, "add_special_tokens": False}).encode(),
            headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())["tokens"]

    def test_loglikelihood_task(self):
        docs = read_jsonl(os.path.join(DATA, "mc.jsonl"))
        res, samples = self.run_task("dsa_tiny_mc")
        r = res["results"]["dsa_tiny_mc"]
        acc = r["acc,none"]
        print("dsa_tiny_mc acc %.3f" % acc, file=sys.stderr)
        self.assertTrue(0.0 <= acc <= 1.0, acc)
        self.assertEqual(res["n-samples"]["dsa_tiny_mc"]["effective"], len(docs))
        # every choice of every document got a finite log-likelihood < 0
        # from the server's echoed prompt logprobs
        self.assertEqual(len(samples), len(docs))
        samples.sort(key=lambda s: s["doc_id"])
        for s, d in zip(samples, docs):
            self.assertEqual(len(s["resps"]), len(d["choices"]))
            for resp in s["resps"]:
                ll, _greedy = resp[0]
                ll = float(ll)
                self.assertTrue(math.isfinite(ll) and ll < 0.0, ll)
        # lm_eval's number is the server's: the continuation's summed prompt
        # logprobs of an echo request over the same tokens (no BOS, as
        # lm_eval encodes), for every choice of the first and last documents
        for s in (samples[0], samples[-1]):
            for (ctx, cont), resp in zip(s["arguments"], s["resps"]):
                n_ctx = len(self.tokenize(ctx))
                ids = self.tokenize(ctx + cont)
                r = self.srv.client.completions.create(
                    model="tiny", prompt=ids, max_tokens=0, logprobs=1, temperature=0,
                    extra_body={"echo": True})
                want = sum(r.choices[0].logprobs.token_logprobs[n_ctx:])
                self.assertAlmostEqual(float(resp[0][0]), want, places=3)

    def test_generate_until_task(self):
        docs = read_jsonl(os.path.join(DATA, "gen.jsonl"))
        res, samples = self.run_task("dsa_tiny_gen")
        em = res["results"]["dsa_tiny_gen"]["exact_match,none"]
        print("dsa_tiny_gen exact_match %.3f" % em, file=sys.stderr)
        self.assertTrue(0.0 <= em <= 1.0, em)
        self.assertEqual(res["n-samples"]["dsa_tiny_gen"]["effective"], len(docs))
        self.assertEqual(len(samples), len(docs))
        # each generation is the server's greedy completion of the same
        # context tokens (no BOS, as lm_eval encodes), stopped at the newline
        for s in samples:
            ctx = s["arguments"][0][0]
            text = s["resps"][0][0]
            r = self.srv.client.completions.create(
                model="tiny", prompt=self.tokenize(ctx), max_tokens=8, temperature=0,
                stop=["\n"])
            self.assertEqual(text, r.choices[0].text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
