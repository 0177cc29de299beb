"""End-to-end tests of vLLM's request parameters and defaults with the
official openai client against dsa-head on loopback (docs/api-parameters.md):
each applied parameter shows its effect, each refused one a 400 whose
`param` names it.  Run by tests/integration/run_head_tests.sh after
test_head.py, with the same environment (DSA_HEAD, DSA_MODEL)."""
import json
import os
import re
import shutil
import tempfile
import unittest

import openai

from test_head import MODEL, Server, curl, KEY


def model_with_genconfig(genconfig):
    """A copy of the tiny model (files linked) whose generation_config.json
    is `genconfig`; the caller removes the folder."""
    d = tempfile.mkdtemp(prefix="dsa-genconfig-")
    for name in os.listdir(MODEL):
        if name != "generation_config.json":
            os.symlink(os.path.join(MODEL, name), os.path.join(d, name))
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump(genconfig, f)
    return d


class Params(unittest.TestCase):
    """One server on the tiny model as dsa-mkmodel writes it (its
    generation_config.json: temperature 0.6, top_p 0.95)."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server("--served-model-name", "tiny", "--max-model-len", "160")
        cls.c = cls.srv.client

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def refused(self, param, create, **kw):
        with self.assertRaises(openai.BadRequestError, msg=param) as cm:
            create(model="tiny", **kw)
        self.assertEqual(cm.exception.status_code, 400)
        self.assertEqual(cm.exception.body["param"], param, cm.exception.body)
        return cm.exception.body["message"]

    def greedy(self, prompt, n_tokens=24, **kw):
        return self.c.completions.create(model="tiny", prompt=prompt, max_tokens=n_tokens,
                                         temperature=0, extra_body={"ignore_eos": True, **kw})

    def test_completions_default_to_16_tokens(self):
        r = self.c.completions.create(model="tiny", prompt="Once",
                                      extra_body={"ignore_eos": True})
        self.assertEqual(r.usage.completion_tokens, 16)
        self.assertEqual(r.choices[0].finish_reason, "length")
        chunks = list(self.c.completions.create(
            model="tiny", prompt="Once", stream=True, stream_options={"include_usage": True},
            extra_body={"ignore_eos": True}))
        self.assertEqual(chunks[-1].usage.completion_tokens, 16)
        # an explicit null lifts the default (vLLM: up to the context's end)
        r = self.c.completions.create(model="tiny", prompt="Once", max_tokens=None,
                                      extra_body={"ignore_eos": True, "max_tokens": None})
        self.assertGreater(r.usage.completion_tokens, 16)

    def test_prompt_tokens_counted_once_whatever_n(self):
        msgs = [{"role": "user", "content": "count me once"}]
        one = self.c.chat.completions.create(model="tiny", messages=msgs, max_tokens=2)
        three = self.c.chat.completions.create(model="tiny", messages=msgs, max_tokens=2, n=3)
        self.assertEqual(len(three.choices), 3)
        self.assertEqual(three.usage.prompt_tokens, one.usage.prompt_tokens)
        chunks = list(self.c.chat.completions.create(
            model="tiny", messages=msgs, max_tokens=2, n=3, stream=True,
            stream_options={"include_usage": True}))
        self.assertEqual(chunks[-1].usage.prompt_tokens, one.usage.prompt_tokens)
        # a list of prompts: each prompt once (vLLM sums over prompts, not choices)
        r = self.c.completions.create(model="tiny", prompt=[[5, 6], [7, 8, 9]], max_tokens=2,
                                      n=2)
        self.assertEqual(len(r.choices), 4)
        self.assertEqual(r.usage.prompt_tokens, 5)
        chunks = list(self.c.completions.create(
            model="tiny", prompt=[[5, 6], [7, 8, 9]], max_tokens=2, n=2, stream=True,
            stream_options={"include_usage": True}))
        self.assertEqual(chunks[-1].usage.prompt_tokens, 5)

    def stop_candidate(self, text):
        for i in range(3, len(text) - 2):
            cand = text[i:i + 2]
            if cand.isascii() and cand.isalnum():
                return cand
        self.fail("no ASCII stop candidate in %r" % text)

    def test_include_stop_str_in_output(self):
        text = self.greedy("The", 40).choices[0].text
        stop = self.stop_candidate(text)
        upto = text[:text.find(stop) + len(stop)]
        r = self.greedy("The", 40, stop=[stop], include_stop_str_in_output=True)
        self.assertEqual(r.choices[0].text, upto)
        self.assertEqual(r.choices[0].finish_reason, "stop")
        r = self.greedy("The", 40, stop=[stop])
        self.assertEqual(r.choices[0].text, upto[:-len(stop)])
        s = "".join(c.choices[0].text for c in self.c.completions.create(
            model="tiny", prompt="The", max_tokens=40, temperature=0, stop=stop, stream=True,
            extra_body={"ignore_eos": True, "include_stop_str_in_output": True}))
        self.assertEqual(s, upto)

    def test_truncate_prompt_tokens(self):
        ids = list(range(5, 25))
        r = self.greedy(ids, 8, truncate_prompt_tokens=4)
        self.assertEqual(r.usage.prompt_tokens, 4)
        self.assertEqual(r.choices[0].text, self.greedy(ids[-4:], 8).choices[0].text)
        r = self.greedy("a long prompt of several words to be cut", 2, truncate_prompt_tokens=3)
        self.assertEqual(r.usage.prompt_tokens, 3)
        r = self.c.chat.completions.create(model="tiny", max_tokens=2,
                                           messages=[{"role": "user", "content": "hello there"}],
                                           extra_body={"truncate_prompt_tokens": 2})
        self.assertEqual(r.usage.prompt_tokens, 2)
        r = self.greedy(ids, 2, truncate_prompt_tokens=-1)  # -1: max_model_len
        self.assertEqual(r.usage.prompt_tokens, 20)
        self.refused("truncate_prompt_tokens", self.c.completions.create, prompt=ids,
                     max_tokens=2, extra_body={"truncate_prompt_tokens": 10 ** 8})
        self.refused("truncate_prompt_tokens", self.c.completions.create, prompt=ids,
                     max_tokens=2, extra_body={"truncate_prompt_tokens": -2})

    def test_continue_final_message(self):
        msgs = [{"role": "user", "content": "Tell a story"},
                {"role": "assistant", "content": "Once upon a"}]
        r = self.c.chat.completions.create(
            model="tiny", messages=msgs, max_tokens=6, temperature=0,
            extra_body={"continue_final_message": True, "add_generation_prompt": False,
                        "ignore_eos": True})
        # the same as completing the rendered conversation left open
        # (DeepSeek-V3's template; the completion adds BOS itself)
        prompt = "<｜User｜>Tell a story<｜Assistant｜>Once upon a"
        c = self.greedy(prompt, 6)
        self.assertEqual(r.usage.prompt_tokens, c.usage.prompt_tokens)
        self.assertEqual(r.choices[0].message.content, c.choices[0].text)
        closed = self.c.chat.completions.create(
            model="tiny", messages=msgs, max_tokens=1, extra_body={"add_generation_prompt": False})
        self.assertGreater(closed.usage.prompt_tokens, r.usage.prompt_tokens)
        # add_generation_prompt defaults to true: both at once is refused
        for extra in ({"continue_final_message": True},
                      {"continue_final_message": True, "add_generation_prompt": True}):
            self.refused("continue_final_message", self.c.chat.completions.create,
                         messages=msgs, max_tokens=1, extra_body=extra)

    def test_text_offset_characters_streamed_and_not(self):
        kw = dict(model="tiny", prompt="é漢字 text", max_tokens=12, temperature=0, logprobs=1,
                  extra_body={"ignore_eos": True})
        r = self.c.completions.create(**kw)
        lp = r.choices[0].logprobs
        off = lp.text_offset
        self.assertEqual(off[0], 0)
        for i in range(len(off) - 1):
            self.assertEqual(off[i + 1] - off[i], len(lp.tokens[i]), lp)
        s_off, s_tokens = [], []
        for ch in self.c.completions.create(stream=True, **kw):
            if ch.choices and ch.choices[0].logprobs:
                s_off += ch.choices[0].logprobs.text_offset
                s_tokens += ch.choices[0].logprobs.tokens
        self.assertEqual(s_tokens, lp.tokens)
        self.assertEqual(s_off, off)

    def test_return_tokens_as_token_ids(self):
        r = self.c.completions.create(model="tiny", prompt="x", max_tokens=4, logprobs=2,
                                      extra_body={"return_tokens_as_token_ids": True,
                                                  "ignore_eos": True})
        lp = r.choices[0].logprobs
        self.assertEqual(len(lp.tokens), 4)
        for t in lp.tokens:
            self.assertRegex(t, r"^token_id:\d+$")
        for top in lp.top_logprobs:
            for t in top:
                self.assertRegex(t, r"^token_id:\d+$")
        r = self.c.chat.completions.create(model="tiny", max_tokens=2, logprobs=True,
                                           messages=[{"role": "user", "content": "q"}],
                                           extra_body={"return_tokens_as_token_ids": True})
        for t in r.choices[0].logprobs.content:
            self.assertRegex(t.token, r"^token_id:\d+$")

    def test_request_id_names_the_response(self):
        r = self.c.completions.create(model="tiny", prompt="x", max_tokens=1,
                                      extra_body={"request_id": "my-req-7"})
        self.assertEqual(r.id, "cmpl-my-req-7")
        r = self.c.chat.completions.create(model="tiny", max_tokens=1,
                                           messages=[{"role": "user", "content": "q"}],
                                           extra_body={"request_id": "abc"})
        self.assertEqual(r.id, "chatcmpl-abc")
        # the X-Request-Id header wins over the body's request_id, as in vLLM
        r = self.c.completions.create(model="tiny", prompt="x", max_tokens=1,
                                      extra_headers={"X-Request-Id": "hdr-9"},
                                      extra_body={"request_id": "body-9"})
        self.assertEqual(r.id, "cmpl-hdr-9")

    def test_add_special_tokens(self):
        a = self.c.completions.create(model="tiny", prompt="hello", max_tokens=1)
        b = self.c.completions.create(model="tiny", prompt="hello", max_tokens=1,
                                      extra_body={"add_special_tokens": False})
        self.assertEqual(a.usage.prompt_tokens, b.usage.prompt_tokens + 1)  # BOS
        msgs = [{"role": "user", "content": "q"}]
        a = self.c.chat.completions.create(model="tiny", messages=msgs, max_tokens=1)
        b = self.c.chat.completions.create(model="tiny", messages=msgs, max_tokens=1,
                                           extra_body={"add_special_tokens": True})
        self.assertEqual(b.usage.prompt_tokens, a.usage.prompt_tokens + 1)

    def test_refusals_name_the_parameter(self):
        chat, compl = self.c.chat.completions.create, self.c.completions.create
        msgs = [{"role": "user", "content": "q"}]
        self.refused("suffix", compl, prompt="x", suffix="y", max_tokens=1)
        self.refused("best_of", compl, prompt="x", best_of=2, max_tokens=1)
        self.refused("stream_options", compl, prompt="x", max_tokens=1,
                     stream_options={"include_usage": True})
        self.refused("stream_options", chat, messages=msgs, max_tokens=1,
                     stream_options={"include_usage": True})
        self.refused("response_format", chat, messages=msgs, max_tokens=1,
                     response_format={"type": "yaml"})
        for name, value in (("chat_template", "{{ messages }}"), ("bad_words", ["x"]),
                            ("logits_processors", ["m.f"]), ("use_beam_search", True),
                            ("cache_salt", "salt"), ("kv_transfer_params", {"a": 1}),
                            ("priority", 2)):
            self.refused(name, chat, messages=msgs, max_tokens=1, extra_body={name: value})
        # accepted: the defaults, and what vLLM itself does not act on here
        r = compl(model="tiny", prompt="x", max_tokens=1, best_of=1, user="u",
                  extra_body={"spaces_between_special_tokens": True, "priority": 0,
                              "length_penalty": 1.5, "vllm_xargs": {"k": 1}})
        self.assertEqual(len(r.choices), 1)
        r = chat(model="tiny", messages=msgs, max_tokens=1, response_format={"type": "text"},
                 metadata={"k": "v"}, store=False, reasoning_effort="low",
                 extra_body={"documents": [{"title": "t", "text": "x"}],
                             "chat_template_kwargs": {"unused": 1}})
        self.assertEqual(len(r.choices), 1)

    def test_unknown_fields_are_logged(self):
        # vLLM answers and logs the fields it ignored; a typo shows in the log
        r = self.c.completions.create(model="tiny", prompt="x", max_tokens=1,
                                      extra_body={"temprature": 0.1})
        self.assertEqual(len(r.choices), 1)
        self.assertTrue(any("ignored: temprature" in line
                            for line in self.srv.logtext().splitlines()))


class GenerationConfig(unittest.TestCase):
    """--generation-config: the checkpoint's defaults, vLLM's own, a folder."""

    def setUp(self):
        self.dirs = []

    def tearDown(self):
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)

    def serve(self, genconfig, *args):
        d = model_with_genconfig(genconfig)
        self.dirs.append(d)
        return Server("--served-model-name", "tiny", *args, model=d)

    @staticmethod
    def texts(c, seeds, **kw):
        return [c.completions.create(model="tiny", prompt="Seed", max_tokens=12, seed=s,
                                     extra_body={"ignore_eos": True}, **kw).choices[0].text
                for s in seeds]

    def test_temperature_zero_in_the_file_is_greedy(self):
        with self.serve({"temperature": 0.0, "do_sample": False}) as srv:
            greedy = self.texts(srv.client, [1], temperature=0)[0]
            # no temperature in the request: the file's 0 applies, whatever the seed
            self.assertEqual(self.texts(srv.client, [1, 2, 3, 4]), [greedy] * 4)
            # the request's own temperature wins over the file's
            self.assertTrue(any(t != greedy for t in self.texts(srv.client, [1, 2, 3, 4],
                                                                temperature=1.0)))
            # chat too
            msgs = [{"role": "user", "content": "hi"}]
            a = [srv.client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8,
                                                    seed=s, extra_body={"ignore_eos": True})
                 .choices[0].message.content for s in (1, 2, 3)]
            self.assertEqual(len(set(a)), 1)

    def test_vllm_mode_ignores_the_file(self):
        with self.serve({"temperature": 0.0}, "--generation-config", "vllm") as srv:
            greedy = self.texts(srv.client, [1], temperature=0)[0]
            self.assertTrue(any(t != greedy for t in self.texts(srv.client, [1, 2, 3, 4])))

    def test_folder_mode(self):
        d = tempfile.mkdtemp(prefix="dsa-genconfig-dir-")
        self.dirs.append(d)
        with open(os.path.join(d, "generation_config.json"), "w") as f:
            json.dump({"temperature": 0.0}, f)
        # the model's own file says 0.6; the folder's 0 applies
        with Server("--served-model-name", "tiny", "--generation-config", d) as srv:
            greedy = self.texts(srv.client, [1], temperature=0)[0]
            self.assertEqual(self.texts(srv.client, [5, 6, 7]), [greedy] * 3)

    def test_max_new_tokens_caps_the_length(self):
        with self.serve({"max_new_tokens": 3}) as srv:
            r = srv.client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}],
                extra_body={"ignore_eos": True})
            self.assertEqual(r.usage.completion_tokens, 3)
            r = srv.client.completions.create(model="tiny", prompt="x", max_tokens=10,
                                              extra_body={"ignore_eos": True})
            self.assertEqual(r.usage.completion_tokens, 3)

    def test_bad_file_fails_startup(self):
        with self.assertRaises(RuntimeError):
            self.serve({"temperature": "hot"})


if __name__ == "__main__":
    unittest.main(verbosity=2)
