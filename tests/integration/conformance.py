"""The harness of test_conformance.py: dsa-head with the tiny checkpoint,
one request helper that sends a parameter the way a vLLM user does through
the official openai SDK (OpenAI parameters as keywords, vLLM's extras in
`extra_body`) and reads the answer into one shape whatever the endpoint
and streaming, the 400 checks, and the registry that turns each case into
one test per (endpoint, streamed).

Environment: DSA_HEAD, DSA_MODEL (see run_head_tests.sh)."""
import json
import os
import sys
import unittest
import urllib.request

import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DSA_MODEL_SLOW", os.environ.get("DSA_MODEL", ""))
from test_head import KEY, Server  # noqa: E402  (one Server helper for all suites)
from sanitizers import sanitizer_reports  # noqa: E402

MODEL = os.environ["DSA_MODEL"]
NAME = "tiny"
PROMPT = "Hello there, how are you"
# A prompt long enough for truncate_prompt_tokens to cut
LONG_PROMPT = "one two three four five six seven eight nine ten eleven twelve"

# Parameters the openai SDK takes as keyword arguments; anything else is a
# vLLM extra and goes through extra_body, as a vLLM user sends it.
SDK_COMMON = {"frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n",
              "presence_penalty", "seed", "stop", "stream_options", "temperature",
              "top_p", "user"}
SDK_CHAT = SDK_COMMON | {"max_completion_tokens", "top_logprobs", "response_format"}
SDK_CMPL = SDK_COMMON | {"echo", "suffix", "best_of"}


class Choice:
    """One choice, the same shape whatever the endpoint and streaming:
    text, finish_reason, and the per-token logprobs as lists (tokens,
    token_logprobs, top_logprobs as {token: logprob} dicts, text_offset)."""

    def __init__(self):
        self.text = ""
        self.finish_reason = None
        self.tokens = []
        self.token_logprobs = []
        self.top_logprobs = []
        self.top_counts = []           # entries sent per position (dicts collapse equal strings)
        self.text_offset = []
        self.has_logprobs = False
        self.extra = {}


class Result:
    def __init__(self):
        self.choices = {}
        self.usage = None
        self.n_usage_chunks = 0
        self.chunks = []
        self.raw = None

    def choice(self, i=0):
        return self.choices[i]

    def sorted(self):
        return [self.choices[k] for k in sorted(self.choices)]


def _add_chat_logprobs(ch, lp):
    if lp is None or lp.content is None:
        return
    ch.has_logprobs = True
    for t in lp.content:
        ch.tokens.append(t.token)
        ch.token_logprobs.append(t.logprob)
        ch.top_logprobs.append({x.token: x.logprob for x in (t.top_logprobs or [])})
        ch.top_counts.append(len(t.top_logprobs or []))


def _add_cmpl_logprobs(ch, lp):
    if lp is None:
        return
    ch.has_logprobs = True
    ch.tokens += list(lp.tokens or [])
    ch.token_logprobs += list(lp.token_logprobs or [])
    ch.top_logprobs += list(lp.top_logprobs or [])
    ch.top_counts += [len(x or {}) for x in (lp.top_logprobs or [])]
    ch.text_offset += list(lp.text_offset or [])


def _extras(obj):
    return dict(getattr(obj, "model_extra", None) or {})


class Conformance(unittest.TestCase):
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.srv = Server("--served-model-name", NAME)
        cls.c = cls.srv.client
        cls.X = cls.tok1("z")          # forced token of most cases
        cls.Y = cls.tok1("q")          # a second, distinct one
        with open(os.path.join(MODEL, "config.json")) as f:
            config = json.load(f)
        cls.EOS = config["eos_token_id"]
        cls.n_vocab = config["vocab_size"]
        with open(os.path.join(MODEL, "tokenizer.json")) as f:
            added = json.load(f)["added_tokens"]
        # a special token that is neither BOS nor EOS (the pad token)
        cls.PAD = next(a for a in added if a["special"] and
                       a["id"] not in (config["bos_token_id"], cls.EOS))

    @classmethod
    def tearDownClass(cls):
        reports = sanitizer_reports(cls.srv)
        cls.srv.stop()
        if reports:
            # the server's own ASan/UBSan findings (its log is not the test's output)
            print("\n".join(reports), file=sys.stderr)
            raise AssertionError("dsa-head logged %d sanitizer report(s)" % len(reports))

    # ---------------------------------------------------------------- helpers
    @classmethod
    def post(cls, path, body):
        req = urllib.request.Request(cls.srv.base + path, data=json.dumps(body).encode(),
                                     headers={"Authorization": "Bearer " + KEY,
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    @classmethod
    def tok(cls, text, special=False):
        return cls.post("/tokenize", {"prompt": text, "add_special_tokens": special})["tokens"]

    @classmethod
    def tok1(cls, text):
        ids = cls.tok(text)
        assert len(ids) == 1, (text, ids)
        return ids[0]

    def request(self, ep, stream, messages=None, prompt=PROMPT, usage=True, **params):
        """Sends one request through the SDK; returns a Result.  When
        streaming, asks for the usage chunk unless usage=False or the case
        sets stream_options itself."""
        sdk = SDK_CHAT if ep == "chat" else SDK_CMPL
        kw = {k: v for k, v in params.items() if k in sdk}
        extra = {k: v for k, v in params.items() if k not in sdk}
        if stream and usage and "stream_options" not in kw:
            kw["stream_options"] = {"include_usage": True}
        if extra:
            kw["extra_body"] = extra
        res = Result()
        if ep == "chat":
            msgs = messages or [{"role": "user", "content": prompt}]
            r = self.c.chat.completions.create(model=NAME, messages=msgs, stream=stream, **kw)
        else:
            r = self.c.completions.create(model=NAME, prompt=prompt, stream=stream, **kw)
        if not stream:
            res.raw = r
            res.usage = r.usage
            for c in r.choices:
                ch = res.choices.setdefault(c.index, Choice())
                ch.finish_reason = c.finish_reason
                ch.extra = _extras(c)
                if ep == "chat":
                    ch.text = c.message.content or ""
                    _add_chat_logprobs(ch, c.logprobs)
                else:
                    ch.text = c.text
                    _add_cmpl_logprobs(ch, c.logprobs)
            return res
        for chunk in r:
            res.chunks.append(chunk)
            if chunk.usage is not None:
                res.n_usage_chunks += 1
                res.usage = chunk.usage
            for c in chunk.choices:
                ch = res.choices.setdefault(c.index, Choice())
                if c.finish_reason is not None:
                    self.assertIsNone(ch.finish_reason, "two finish_reasons for one choice")
                    ch.finish_reason = c.finish_reason
                if ep == "chat":
                    ch.text += c.delta.content or ""
                    _add_chat_logprobs(ch, c.logprobs)
                else:
                    ch.text += c.text
                    _add_cmpl_logprobs(ch, c.logprobs)
        return res

    def refused(self, ep, stream, param, **params):
        """Asserts the request gets HTTP 400 with an OpenAI error object
        whose `param` is `param`."""
        with self.assertRaises(openai.BadRequestError) as cm:
            self.request(ep, stream, **params)
        e = cm.exception
        self.assertEqual(e.status_code, 400)
        body = e.body if isinstance(e.body, dict) else {}
        body = body.get("error", body)
        self.assertIsInstance(body.get("message"), str)
        self.assertEqual(body.get("type"), "invalid_request_error")
        self.assertEqual(body.get("param"), param, body)

    def applied_or_refused(self, ep, stream, param, check, **params):
        """For a vLLM parameter outside this project's scope: either it is
        applied (`check(result)` passes) or the request is refused with a
        400 naming it.  Never accepted and ignored."""
        try:
            r = self.request(ep, stream, **params)
        except openai.BadRequestError as e:
            body = e.body if isinstance(e.body, dict) else {}
            body = body.get("error", body)
            names = param if isinstance(param, tuple) else (param,)
            self.assertIn(body.get("param"), names, body)
            return
        check(r)

    def greedy(self, ep, stream, n_tokens=6, **params):
        return self.request(ep, stream, temperature=0, max_tokens=n_tokens, ignore_eos=True,
                            **params).choice().text

    def assert_usage(self, r, prompt=None, completion=None):
        self.assertIsNotNone(r.usage, "no usage")
        if prompt is not None:
            self.assertEqual(r.usage.prompt_tokens, prompt)
        if completion is not None:
            self.assertEqual(r.usage.completion_tokens, completion)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)

    def logprobs_args(self, ep, k):
        return {"logprobs": True, "top_logprobs": k} if ep == "chat" else {"logprobs": k}


# ------------------------------------------------------------------- cases
# Each case is fn(self, ep, stream); `case` registers it for the endpoints
# and streaming modes it applies to.
CASES = []


def case(endpoints=("chat", "cmpl"), streams=(False, True)):
    def deco(fn):
        CASES.append((fn.__name__, fn, endpoints, streams))
        return fn
    return deco


def register_cases():
    """Adds test_<case>__<chat|cmpl>__<plain|stream> to Conformance for
    every registered case."""
    for name, fn, eps, streams in CASES:
        for ep in eps:
            for stream in streams:
                setattr(Conformance, "test_%s__%s__%s" % (name, ep, "stream" if stream else "plain"),
                        _make(fn, ep, stream))


def _make(fn, ep, stream):
    def test(self):
        fn(self, "chat" if ep == "chat" else "cmpl", stream)
    test.__doc__ = fn.__doc__
    return test
