"""End-to-end tests of the sampler-side parameters (vLLM's stop_token_ids,
min_tokens, logit_bias, allowed_token_ids, prompt_logprobs, echo) against
dsa-head on loopback with the tiny dsa-mkmodel checkpoint, driven by the
official openai client.  Run by run_head_tests.sh (meson test 'head_logits',
DSA_E2E_SCRIPT=test_logits.py)."""
import json
import math
import os
import sys
import unittest
import urllib.request

import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_head import Server  # noqa: E402

PROMPT = "The quick brown fox jumps over the lazy dog"


class Logits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server()
        cls.c = cls.srv.client
        with open(os.path.join(os.environ["DSA_MODEL"], "config.json")) as f:
            cfg = json.load(f)
        cls.vocab = cfg["vocab_size"]
        cls.eos = cfg["eos_token_id"]

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def tokenize(self, text):
        req = urllib.request.Request(self.srv.base + "/tokenize", method="POST",
                                     data=json.dumps({"prompt": text}).encode(),
                                     headers={"Authorization": "Bearer sk-test-key",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())["tokens"]

    def expect_400(self, param, **kw):
        with self.assertRaises(openai.BadRequestError) as cm:
            self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=4, **kw)
        self.assertEqual(cm.exception.body.get("param"), param, cm.exception.body)

    def detok(self, ids):
        req = urllib.request.Request(self.srv.base + "/detokenize", method="POST",
                                     data=json.dumps({"tokens": ids}).encode(),
                                     headers={"Authorization": "Bearer sk-test-key",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())["prompt"]

    def test_logit_bias_forces_a_token(self):
        plain = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=6,
                                          temperature=0)
        target = 1000 % self.vocab
        r = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=6, temperature=0,
                                      logit_bias={str(target): 100})
        self.assertNotEqual(r.choices[0].text, plain.choices[0].text)
        self.assertEqual(r.choices[0].text, self.detok([target] * 6))
        # at temperature 1 too: +100 leaves no mass elsewhere
        r = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=6, temperature=1,
                                      seed=7, logit_bias={str(target): 100})
        self.assertEqual(r.choices[0].text, self.detok([target] * 6))

    def test_logit_bias_validation(self):
        self.expect_400("logit_bias", logit_bias={str(self.vocab): 5})
        self.expect_400("logit_bias", logit_bias={"-1": 5})
        self.expect_400("logit_bias", logit_bias={"abc": 5})
        self.expect_400("logit_bias", extra_body={"logit_bias": [1, 2]})
        # values outside [-100, 100] are clamped, as vLLM does
        r = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=2, temperature=0,
                                      logit_bias={"5": 1e6})
        self.assertEqual(r.choices[0].finish_reason, "length")

    def test_allowed_token_ids(self):
        allowed = [7, 11, 13]
        r = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=12,
                                      temperature=1.0, seed=3, logprobs=0,
                                      extra_body={"allowed_token_ids": allowed,
                                                  "ignore_eos": True})
        texts = set(r.choices[0].logprobs.tokens)
        allowed_texts = set()
        for t in allowed:
            req = urllib.request.Request(self.srv.base + "/detokenize", method="POST",
                                         data=json.dumps({"tokens": [t]}).encode(),
                                         headers={"Authorization": "Bearer sk-test-key",
                                                  "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                allowed_texts.add(json.loads(resp.read())["prompt"])
        self.assertTrue(texts <= allowed_texts, (texts, allowed_texts))
        self.assertEqual(len(r.choices[0].logprobs.tokens), 12)
        self.expect_400("allowed_token_ids", extra_body={"allowed_token_ids": []})
        self.expect_400("allowed_token_ids",
                        extra_body={"allowed_token_ids": [1, self.vocab + 5]})

    def test_stop_token_ids_and_min_tokens(self):
        stop_id = 1000 % self.vocab
        force = {str(stop_id): 100}
        # the stop id forced first: the request stops at once, its text empty
        r = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=8, temperature=0,
                                      logit_bias=force,
                                      extra_body={"stop_token_ids": [stop_id]})
        ch = r.choices[0]
        self.assertEqual(ch.finish_reason, "stop")
        self.assertEqual(ch.model_extra.get("stop_reason"), stop_id)
        self.assertEqual(r.usage.completion_tokens, 1)
        self.assertEqual(ch.text, "")
        # min_tokens 3: the id is banned for three tokens, then sampled
        r = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=8, temperature=0,
                                      logit_bias=force, logprobs=0,
                                      extra_body={"stop_token_ids": [stop_id],
                                                  "min_tokens": 3})
        ch = r.choices[0]
        self.assertEqual(r.usage.completion_tokens, 4)
        self.assertEqual(ch.finish_reason, "stop")
        self.assertEqual(ch.model_extra.get("stop_reason"), stop_id)
        self.assertEqual(len(ch.logprobs.tokens), 4)
        self.assertNotIn(self.detok([stop_id]), ch.logprobs.tokens[:3])
        self.assertEqual(ch.text, "".join(ch.logprobs.tokens[:3]))
        # streamed: the finish chunk carries it, chat too
        chunks = list(self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=8,
                                                temperature=0, logit_bias=force, stream=True,
                                                extra_body={"stop_token_ids": [stop_id]}))
        last = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
        self.assertEqual(last.choices[0].finish_reason, "stop")
        self.assertEqual(last.choices[0].model_extra.get("stop_reason"), stop_id)
        chunks = list(self.c.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=8,
            temperature=0, logit_bias=force, stream=True,
            extra_body={"stop_token_ids": [stop_id]}))
        last = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
        self.assertEqual(last.choices[0].model_extra.get("stop_reason"), stop_id)
                # EOS and length give stop_reason null
        r = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=2, temperature=0)
        self.assertIsNone(r.choices[0].model_extra.get("stop_reason", "absent"))
        self.expect_400("min_tokens", extra_body={"min_tokens": 5})
        self.expect_400("min_tokens", extra_body={"min_tokens": -1})
        self.expect_400("stop_token_ids", extra_body={"stop_token_ids": ["a"]})

    def test_min_tokens_holds_stop_strings(self):
        # a stop string matching the first token's text ends a plain request
        # at once; with min_tokens the match is not looked for before then
        first = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=1,
                                          temperature=0).choices[0].text
        if not first:
            self.skipTest("the first greedy token decodes to no text")
        r = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=6, temperature=0,
                                      stop=[first])
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertEqual(r.choices[0].model_extra.get("stop_reason"), first)
        self.assertEqual(r.usage.completion_tokens, 1)
        r = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=6, temperature=0,
                                      stop=[first], extra_body={"min_tokens": 4,
                                                                "ignore_eos": True})
        self.assertGreaterEqual(r.usage.completion_tokens, 4)
        self.assertTrue(r.choices[0].text.startswith(first))
        # min_tokens 1: the first token's text is not searched either (vLLM
        # looks for stop strings once more than min_tokens tokens exist)
        r = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=6, temperature=0,
                                      stop=[first], extra_body={"min_tokens": 1,
                                                                "ignore_eos": True})
        self.assertGreaterEqual(r.usage.completion_tokens, 2)
        self.assertTrue(r.choices[0].text.startswith(first))

    def test_min_tokens_keeps_generating_past_eos(self):
        # EOS forced by +100 bias: without min_tokens one token, with it at
        # least min_tokens (EOS is masked until then)
        bias = {str(self.eos): 100}
        r = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=10, temperature=0,
                                      logit_bias=bias)
        self.assertEqual(r.usage.completion_tokens, 1)
        self.assertEqual(r.choices[0].finish_reason, "stop")
        r = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=10, temperature=0,
                                      logit_bias=bias, extra_body={"min_tokens": 5})
        self.assertEqual(r.usage.completion_tokens, 6)  # 5 forced non-EOS, then EOS
        self.assertEqual(r.choices[0].finish_reason, "stop")

    def test_prompt_logprobs_and_echo_agree(self):
        ids = self.tokenize(PROMPT)
        r = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=1, temperature=0,
                                      extra_body={"prompt_logprobs": 2})
        pl = r.choices[0].model_extra["prompt_logprobs"]
        self.assertEqual(len(pl), len(ids))
        self.assertIsNone(pl[0])
        for k in range(1, len(ids)):
            d = pl[k]
            keys = list(d.keys())
            self.assertEqual(keys[0], str(ids[k]))  # the prompt token first
            self.assertLessEqual(len(d), 3)
            for v in d.values():
                self.assertLessEqual(v["logprob"], 0.0)
                self.assertGreaterEqual(v["rank"], 1)
                self.assertIn("decoded_token", v)
            tops = [v for key, v in d.items() if key != str(ids[k])]
            best = max([d[keys[0]]["logprob"]] + [v["logprob"] for v in tops])
            if d[keys[0]]["rank"] == 1:
                self.assertAlmostEqual(d[keys[0]]["logprob"], best, places=5)
        # the loglikelihood request of evaluation harnesses: echo, logprobs,
        # max_tokens 0 -> the prompt only, its logprobs equal prompt_logprobs
        e = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=0, echo=True,
                                      logprobs=1, temperature=0)
        ch = e.choices[0]
        self.assertEqual(ch.text, PROMPT)
        lp = ch.logprobs
        self.assertEqual(len(lp.token_logprobs), len(ids))
        self.assertIsNone(lp.token_logprobs[0])
        self.assertIsNone(lp.top_logprobs[0])
        for k in range(1, len(ids)):
            self.assertAlmostEqual(lp.token_logprobs[k], pl[k][str(ids[k])]["logprob"],
                                   places=5)
        # echo with generation: prompt text then the generated text
        g = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=3, temperature=0)
        e2 = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=3, echo=True,
                                       temperature=0, logprobs=0)
        self.assertEqual(e2.choices[0].text, PROMPT + g.choices[0].text)
        self.assertEqual(len(e2.choices[0].logprobs.tokens), len(ids) + 3)
        self.assertTrue(all(math.isfinite(x) for x in lp.token_logprobs[1:]))
        # several prompts and n = 2 in one request: each choice has its own
        # prompt's entries (under ASan this also checks the choices' token
        # texts stay valid while later choices are formatted)
        prompts = [PROMPT, "Hello there", "1 2 3"]
        m = self.c.completions.create(model="tiny", prompt=prompts, max_tokens=0, echo=True,
                                      logprobs=2, n=2, temperature=0)
        self.assertEqual(len(m.choices), 6)
        for ch in m.choices:
            p = prompts[ch.index // 2]
            self.assertEqual(ch.text, p)
            one = self.c.completions.create(model="tiny", prompt=p, max_tokens=0, echo=True,
                                            logprobs=2, temperature=0).choices[0].logprobs
            self.assertEqual(ch.logprobs.tokens, one.tokens)
            for x, y in zip(ch.logprobs.token_logprobs[1:], one.token_logprobs[1:]):
                self.assertAlmostEqual(x, y, places=5)
        # streamed echo: the prompt comes with the first delta, the same
        # text and logprobs as the non-streamed response
        for max_tokens in (0, 3):
            ref = self.c.completions.create(model="tiny", prompt=PROMPT, max_tokens=max_tokens,
                                            echo=True, logprobs=1, temperature=0)
            chunks = list(self.c.completions.create(model="tiny", prompt=PROMPT,
                                                    max_tokens=max_tokens, echo=True,
                                                    logprobs=1, temperature=0, stream=True))
            text = "".join(c.choices[0].text for c in chunks if c.choices)
            self.assertEqual(text, ref.choices[0].text)
            got = [x for c in chunks if c.choices and c.choices[0].logprobs
                   for x in c.choices[0].logprobs.token_logprobs]
            want = ref.choices[0].logprobs.token_logprobs
            self.assertEqual(len(got), len(want))
            self.assertIsNone(got[0])
            for a, b in zip(got[1:], want[1:]):
                self.assertAlmostEqual(a, b, places=5)

    def test_prompt_logprobs_chat_and_bounds(self):
        r = self.c.chat.completions.create(model="tiny", messages=[{"role": "user",
                                                                  "content": "Hi there"}],
                                           max_tokens=2, extra_body={"prompt_logprobs": 1})
        pl = r.model_extra["prompt_logprobs"]
        self.assertIsNone(pl[0])
        self.assertGreater(len(pl), 2)
        self.assertTrue(all(1 <= len(d) <= 2 for d in pl[1:]))
        self.expect_400("prompt_logprobs", extra_body={"prompt_logprobs": 21})
        self.expect_400("prompt_logprobs", extra_body={"prompt_logprobs": -1})
        self.expect_400("prompt_logprobs", extra_body={"prompt_logprobs": 2}, stream=True)
        self.expect_400("max_tokens", extra_body={"max_tokens": 0})

    def test_chat_echo(self):
        msgs = [{"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Well, "}]
        kw = dict(model="tiny", messages=msgs, max_tokens=4, temperature=0)
        plain = self.c.chat.completions.create(**kw)
        e = self.c.chat.completions.create(**kw, extra_body={"echo": True})
        self.assertEqual(e.choices[0].message.content,
                         "Well, " + plain.choices[0].message.content)
        # streamed: the echoed text comes first, then the same deltas
        s = self.c.chat.completions.create(**kw, stream=True, extra_body={"echo": True})
        text = "".join(c.choices[0].delta.content or "" for c in s if c.choices)
        self.assertEqual(text, e.choices[0].message.content)
        # the last message is the user's: nothing is echoed
        e = self.c.chat.completions.create(model="tiny", messages=msgs[:1], max_tokens=4,
                                           temperature=0, extra_body={"echo": True})
        p = self.c.chat.completions.create(model="tiny", messages=msgs[:1], max_tokens=4,
                                           temperature=0)
        self.assertEqual(e.choices[0].message.content, p.choices[0].message.content)


if __name__ == "__main__":
    unittest.main(verbosity=2)
