"""vLLM conformance of the request parameters, driven by the official openai
SDK against dsa-head on loopback with the tiny dsa-mkmodel checkpoint.

Every parameter of vLLM's tables for /v1/chat/completions and
/v1/completions (the OpenAI parameters and vLLM's extra parameters, sent
through `extra_body`) is sent, streamed and not, and the test asserts its
EFFECT, or the HTTP 400 whose `param` names it where vLLM (or this project,
for features it does not have) refuses it.  One test id per
(parameter, endpoint, streamed): test_<case>__<chat|cmpl>__<plain|stream>.

The weights are random, so the checks use effects that hold for any
weights: a +100 logit_bias on a token X makes every sampled token X (the
bias dwarfs the model's logits), a -100 bias removes a token, greedy
decoding follows the raw logprobs' argmax, and so on.  vLLM's sampler
order matters for some cases and is the order they assume: allowed token
ids, bad words, min_tokens and logit_bias, then the penalties
(repetition, frequency, presence), then greedy or temperature, min_p,
top_k/top_p; returned logprobs are the raw model logprobs (before any of
these).

The harness (server, request helper, registry) is conformance.py.
Environment: DSA_HEAD, DSA_MODEL (see run_head_tests.sh)."""

import math
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conformance  # noqa: E402
from conformance import LONG_PROMPT, PROMPT, _extras, case, register_cases  # noqa: E402
from test_head import wait_for  # noqa: E402


# --- lengths and counts ------------------------------------------------------

@case()
def max_tokens(self, ep, stream):
    # vLLM: max_tokens bounds the generated tokens; ignore_eos so it is reached
    r = self.request(ep, stream, max_tokens=3, ignore_eos=True, temperature=1.0)
    self.assertEqual(r.choice().finish_reason, "length")
    self.assert_usage(r, completion=3)


@case(endpoints=("chat",))
def max_completion_tokens(self, ep, stream):
    # vLLM (chat): max_completion_tokens is the newer name of max_tokens and wins over it
    r = self.request(ep, stream, max_completion_tokens=2, max_tokens=5, ignore_eos=True)
    self.assertEqual(r.choice().finish_reason, "length")
    self.assert_usage(r, completion=2)


@case(endpoints=("cmpl",))
def default_max_tokens_16(self, ep, stream):
    # vLLM: CompletionRequest.max_tokens defaults to 16
    r = self.request(ep, stream, ignore_eos=True)
    self.assertEqual(r.choice().finish_reason, "length")
    self.assert_usage(r, completion=16)


@case()
def n(self, ep, stream):
    # vLLM: n choices, indexed 0..n-1, each with its own finish_reason; usage sums them
    r = self.request(ep, stream, n=3, max_tokens=2, ignore_eos=True, temperature=1.0, seed=5)
    self.assertEqual(sorted(r.choices), [0, 1, 2])
    for ch in r.sorted():
        self.assertEqual(ch.finish_reason, "length")
    self.assert_usage(r, completion=6)


@case()
def n_prompt_tokens_once(self, ep, stream):
    # vLLM: usage.prompt_tokens counts the prompt once whatever n is
    one = self.request(ep, stream, max_tokens=1)
    three = self.request(ep, stream, n=3, max_tokens=1)
    self.assertEqual(three.usage.prompt_tokens, one.usage.prompt_tokens)


@case(endpoints=("cmpl",))
def prompt_list_usage(self, ep, stream):
    # vLLM: a list of prompts is one choice per prompt; prompt_tokens sums the prompts
    a = self.request(ep, stream, prompt="Hello", max_tokens=1).usage.prompt_tokens
    b = self.request(ep, stream, prompt="there you", max_tokens=1).usage.prompt_tokens
    r = self.request(ep, stream, prompt=["Hello", "there you"], max_tokens=2, ignore_eos=True)
    self.assertEqual(sorted(r.choices), [0, 1])
    self.assert_usage(r, prompt=a + b, completion=4)


# --- sampling ----------------------------------------------------------------

@case()
def seed(self, ep, stream):
    # vLLM: a per-request seed makes sampling reproducible; other seeds differ
    def run(s):
        return self.request(ep, stream, seed=s, temperature=1.0, max_tokens=10,
                            ignore_eos=True).choice().text
    a = run(1234)
    self.assertEqual(run(1234), a)
    self.assertTrue(any(run(s) != a for s in (1, 2, 3)), "seeds 1, 2, 3 and 1234 agree")


@case()
def temperature_zero_is_greedy(self, ep, stream):
    # vLLM: temperature 0 samples the argmax; returned logprobs are the raw
    # model logprobs, so each sampled token is the top one of top_logprobs
    r = self.request(ep, stream, temperature=0, max_tokens=6, ignore_eos=True,
                     **self.logprobs_args(ep, 3))
    ch = r.choice()
    self.assertEqual(len(ch.tokens), 6)
    for lp, top in zip(ch.token_logprobs, ch.top_logprobs):
        self.assertGreaterEqual(lp, max(top.values()) - 1e-4)
    self.assertEqual(self.greedy(ep, stream), self.greedy(ep, stream))


@case()
def top_k(self, ep, stream):
    # vLLM: top_k=1 keeps only the argmax: temperature 1 samples greedily
    self.assertEqual(self.request(ep, stream, top_k=1, temperature=1.0, seed=7, max_tokens=6,
                                  ignore_eos=True).choice().text,
                     self.greedy(ep, stream))


@case()
def top_p(self, ep, stream):
    # vLLM: top_p keeps the smallest set whose mass reaches top_p: a tiny
    # top_p keeps only the most likely token
    self.assertEqual(self.request(ep, stream, top_p=1e-6, temperature=1.0, seed=7,
                                  max_tokens=6, ignore_eos=True).choice().text,
                     self.greedy(ep, stream))


@case()
def min_p(self, ep, stream):
    # vLLM: min_p drops tokens below min_p * p(top): min_p=1 keeps the argmax
    self.assertEqual(self.request(ep, stream, min_p=1.0, temperature=1.0, seed=7,
                                  max_tokens=6, ignore_eos=True).choice().text,
                     self.greedy(ep, stream))


# Prompts to search for tokens with the properties a case needs (the
# weights are random, so which prompt fits is found at run time; the
# search is deterministic for a given checkpoint)
SEARCH_PROMPTS = [PROMPT] + ["%s %s" % (a, b) for a in
                             ("Once upon", "The weather", "A B C", "print(x)", "red green",
                              "1, 2, 3,", "Dear Sir", "Lorem ipsum")
                             for b in ("today", "and then", "is", "of the", "we")]


def _single_id(self, text):
    """The token id of `text` when it is plain text of exactly one token."""
    if not text or "\ufffd" in text:
        return None
    ids = self.tok(text)
    return ids[0] if len(ids) == 1 else None


def _penalty_setup(self, ep, stream):
    """Finds a prompt whose greedy tokens A, B are two different plain
    one-token texts; returns (prompt, A, B, A's id, bias) where the bias on
    A makes A win step 2 by one logit (A A without penalty) and lose it by
    one logit once A is penalised by 2 (A B).  The raw logprobs of step 2
    (B's from the greedy run, A's from a run that forces A twice) are
    logits minus one constant, so their difference is the logit gap."""
    for prompt in SEARCH_PROMPTS:
        ch = self.request(ep, stream, prompt=prompt, temperature=0, max_tokens=2,
                          ignore_eos=True, **self.logprobs_args(ep, 1)).choice()
        a, b = ch.tokens
        if a == b or ch.text != a + b:
            continue
        ida = _single_id(self, a)
        if ida is None or _single_id(self, b) is None:
            continue
        forced = self.request(ep, stream, prompt=prompt, temperature=0, max_tokens=2,
                              ignore_eos=True, logit_bias={str(ida): 50},
                              **self.logprobs_args(ep, 1)).choice()
        self.assertEqual(forced.tokens, [a, a])
        bias = ch.token_logprobs[1] - forced.token_logprobs[1] + 1.0
        base = self.request(ep, stream, prompt=prompt, temperature=0, max_tokens=2,
                            ignore_eos=True, logit_bias={str(ida): bias}).choice().text
        self.assertEqual(base, a + a, "the bias alone must repeat the first token")
        return prompt, a, b, ida, bias
    self.fail("no prompt of SEARCH_PROMPTS fits the penalty check")


@case()
def presence_penalty(self, ep, stream):
    # vLLM: presence_penalty subtracts p from the logit of every token already
    # generated (after logit_bias): A's one-logit lead at step 2 becomes -1
    prompt, a, b, ida, bias = _penalty_setup(self, ep, stream)
    r = self.request(ep, stream, prompt=prompt, temperature=0, max_tokens=2, ignore_eos=True,
                     logit_bias={str(ida): bias}, presence_penalty=2.0)
    self.assertEqual(r.choice().text, a + b)


@case()
def frequency_penalty(self, ep, stream):
    # vLLM: frequency_penalty subtracts f * count: one A and f=2 costs 2 logits
    prompt, a, b, ida, bias = _penalty_setup(self, ep, stream)
    r = self.request(ep, stream, prompt=prompt, temperature=0, max_tokens=2, ignore_eos=True,
                     logit_bias={str(ida): bias}, frequency_penalty=2.0)
    self.assertEqual(r.choice().text, a + b)


@case()
def repetition_penalty(self, ep, stream):
    # vLLM: repetition_penalty divides positive logits of tokens seen in the
    # prompt (or output) by r; applied after logit_bias.  X is in the prompt
    # with +100, Y not with +80: X wins (~100 vs ~80) until r=2 halves it (~50)
    prompt = "z: " + PROMPT
    if ep == "cmpl":
        self.assertIn(self.X, self.tok(prompt))
    bias = {str(self.X): 100, str(self.Y): 80}
    base = self.request(ep, stream, prompt=prompt, temperature=0, max_tokens=1,
                        logit_bias=bias).choice().text
    self.assertEqual(base, "z")
    r = self.request(ep, stream, prompt=prompt, temperature=0, max_tokens=1,
                     logit_bias=bias, repetition_penalty=2.0)
    self.assertEqual(r.choice().text, "q")


@case()
def logit_bias(self, ep, stream):
    # vLLM: logit_bias adds to the logits (keys are token ids as strings):
    # +100 forces the token; -100 bans it
    r = self.request(ep, stream, logit_bias={str(self.X): 100}, max_tokens=4, ignore_eos=True,
                     temperature=1.0)
    self.assertEqual(r.choice().text, "zzzz")
    g = self.request(ep, stream, temperature=0, max_tokens=1, ignore_eos=True,
                     **self.logprobs_args(ep, 1)).choice()
    first = self.tok(g.tokens[0])
    if len(first) == 1:
        r = self.request(ep, stream, temperature=0, max_tokens=1, ignore_eos=True,
                         logit_bias={str(first[0]): -100})
        self.assertNotEqual(r.choice().text, g.text)


@case()
def logit_bias_validated(self, ep, stream):
    # vLLM: a key that is not an integer, or an id outside the vocabulary, is a 400
    self.refused(ep, stream, "logit_bias", max_tokens=1,
                 logit_bias={str(self.n_vocab + 1000): 5})
    self.refused(ep, stream, "logit_bias", max_tokens=1, logit_bias={"not-an-id": 1})


@case()
def logit_bias_clamped(self, ep, stream):
    # vLLM clamps bias values to [-100, 100] (the OpenAI bounds) instead of
    # refusing them.  A is the greedy first token, B the runner-up: with
    # B +150 and A +100, clamping leaves A ahead; unclamped, B would win
    for prompt in SEARCH_PROMPTS:
        g = self.request(ep, stream, prompt=prompt, temperature=0, max_tokens=1,
                         ignore_eos=True, **self.logprobs_args(ep, 5)).choice()
        a = g.tokens[0]
        ida = _single_id(self, a)
        idb = next((i for i in (_single_id(self, t) for t in g.top_logprobs[0] if t != a)
                    if i is not None), None)
        if ida is None or idb is None or g.text != a:
            continue
        b = self.request(ep, stream, prompt=prompt, temperature=0, max_tokens=1,
                         ignore_eos=True, logit_bias={str(idb): 100}).choice().text
        self.assertNotEqual(b, a, "logit_bias +100 does not move the greedy token")
        r = self.request(ep, stream, prompt=prompt, temperature=0, max_tokens=1,
                         ignore_eos=True, logit_bias={str(ida): 100, str(idb): 150})
        self.assertEqual(r.choice().text, a)
        return
    self.fail("no prompt of SEARCH_PROMPTS fits the clamping check")


@case()
def allowed_token_ids(self, ep, stream):
    # vLLM: allowed_token_ids masks every other token
    r = self.request(ep, stream, allowed_token_ids=[self.X, self.Y], temperature=1.0, seed=3,
                     max_tokens=8, ignore_eos=True)
    text = r.choice().text
    self.assertEqual(len(text), 8)
    self.assertLessEqual(set(text), {"z", "q"})
    self.refused(ep, stream, "allowed_token_ids", max_tokens=1,
                 allowed_token_ids=[self.n_vocab + 1000])


@case()
def bad_words(self, ep, stream):
    # vLLM: bad_words bans the token sequences of each word (applied before
    # logit_bias, so a banned forced token stays banned); out of this
    # project's scope: applied or refused
    def check(r):
        self.assertNotIn("z", r.choice().text)
        self.assert_usage(r, completion=4)
    forced = self.request(ep, stream, logit_bias={str(self.X): 100}, max_tokens=4,
                          ignore_eos=True).choice().text
    self.assertEqual(forced, "zzzz", "logit_bias does not force the token")
    self.applied_or_refused(ep, stream, "bad_words", check, bad_words=["z"],
                            logit_bias={str(self.X): 100}, max_tokens=4, ignore_eos=True)


# --- stopping ----------------------------------------------------------------

@case()
def stop(self, ep, stream):
    # vLLM: the output ends before the first stop string; finish_reason "stop"
    r = self.request(ep, stream, logit_bias={str(self.X): 100}, max_tokens=8, stop=["zz"])
    self.assertEqual(r.choice().text, "")
    self.assertEqual(r.choice().finish_reason, "stop")
    self.assertEqual(self.request(ep, stream, logit_bias={str(self.X): 100}, max_tokens=8,
                                  stop="q", ignore_eos=True).choice().text, "z" * 8)


@case()
def include_stop_str_in_output(self, ep, stream):
    # vLLM: include_stop_str_in_output keeps the stop string at the end
    r = self.request(ep, stream, logit_bias={str(self.X): 100}, max_tokens=8, stop=["zz"],
                     include_stop_str_in_output=True)
    self.assertEqual(r.choice().text, "zz")
    self.assertEqual(r.choice().finish_reason, "stop")


@case()
def stop_token_ids(self, ep, stream):
    # vLLM: a sampled id in stop_token_ids ends the sequence (finish "stop");
    # the stop token counts as generated but its text is not in the output
    r = self.request(ep, stream, logit_bias={str(self.X): 100}, max_tokens=8,
                     stop_token_ids=[self.X])
    self.assertEqual(r.choice().text, "")
    self.assertEqual(r.choice().finish_reason, "stop")
    self.assert_usage(r, completion=1)
    # ...and with include_stop_str_in_output, its text is kept
    r = self.request(ep, stream, logit_bias={str(self.X): 100}, max_tokens=8,
                     stop_token_ids=[self.X], include_stop_str_in_output=True)
    self.assertEqual(r.choice().text, "z")


@case()
def ignore_eos(self, ep, stream):
    # vLLM: EOS ends a sequence (finish "stop", EOS counted, no text) unless ignore_eos
    bias = {str(self.EOS): 100}
    r = self.request(ep, stream, logit_bias=bias, max_tokens=4)
    self.assertEqual(r.choice().finish_reason, "stop")
    self.assertEqual(r.choice().text, "")
    self.assert_usage(r, completion=1)
    r = self.request(ep, stream, logit_bias=bias, max_tokens=4, ignore_eos=True)
    self.assertEqual(r.choice().finish_reason, "length")
    self.assert_usage(r, completion=4)


@case()
def min_tokens(self, ep, stream):
    # vLLM: EOS and stop_token_ids are masked until min_tokens are generated
    r = self.request(ep, stream, logit_bias={str(self.EOS): 100}, max_tokens=10, min_tokens=3)
    self.assertEqual(r.choice().finish_reason, "stop")
    self.assert_usage(r, completion=4)
    r = self.request(ep, stream, logit_bias={str(self.X): 100}, max_tokens=10, min_tokens=2,
                     stop_token_ids=[self.X], ignore_eos=True)
    self.assertEqual(r.choice().finish_reason, "stop")
    self.assert_usage(r, completion=3)
    self.assertNotIn("z", r.choice().text)
    # stop strings are not looked for in the text of the first min_tokens
    # tokens either: the 4th "z" is the first that can match "z"
    r = self.request(ep, stream, logit_bias={str(self.X): 100}, max_tokens=10, min_tokens=3,
                     stop=["z"], ignore_eos=True)
    self.assertEqual(r.choice().text, "zzz")
    self.assertEqual(r.choice().finish_reason, "stop")
    self.assert_usage(r, completion=4)


@case()
def min_tokens_validated(self, ep, stream):
    # vLLM: min_tokens must be >= 0 and <= max_tokens
    self.refused(ep, stream, "min_tokens", max_tokens=2, min_tokens=3)
    self.refused(ep, stream, "min_tokens", max_tokens=2, min_tokens=-1)


# --- text --------------------------------------------------------------------

@case()
def skip_special_tokens(self, ep, stream):
    # vLLM: special tokens are dropped from the text unless skip_special_tokens=false
    bias = {str(self.PAD["id"]): 100}
    r = self.request(ep, stream, logit_bias=bias, max_tokens=3, ignore_eos=True)
    self.assertEqual(r.choice().text, "")
    self.assert_usage(r, completion=3)
    r = self.request(ep, stream, logit_bias=bias, max_tokens=3, ignore_eos=True,
                     skip_special_tokens=False)
    self.assertEqual(r.choice().text, self.PAD["content"] * 3)


@case()
def spaces_between_special_tokens(self, ep, stream):
    # vLLM: only slow tokenizers put spaces between special tokens; a fast
    # (tokenizer.json) tokenizer, the kind DeepSeek ships, ignores the flag
    bias = {str(self.PAD["id"]): 100}
    for flag in (True, False):
        r = self.request(ep, stream, logit_bias=bias, max_tokens=2, ignore_eos=True,
                         skip_special_tokens=False, spaces_between_special_tokens=flag)
        self.assertEqual(r.choice().text, self.PAD["content"] * 2)


# --- logprobs ----------------------------------------------------------------

@case()
def logprobs(self, ep, stream):
    # vLLM: one entry per generated token; top_logprobs holds k entries (k+1
    # when the sampled token is not among them); values are log-probabilities
    r = self.request(ep, stream, temperature=1.0, seed=11, max_tokens=5, ignore_eos=True,
                     **self.logprobs_args(ep, 3))
    ch = r.choice()
    self.assertTrue(ch.has_logprobs)
    self.assertEqual(len(ch.tokens), 5)
    self.assertEqual(len(ch.token_logprobs), 5)
    self.assertEqual(len(ch.top_logprobs), 5)
    for tok, lp, top, count in zip(ch.tokens, ch.token_logprobs, ch.top_logprobs,
                                   ch.top_counts):
        self.assertLessEqual(lp, 0.0)
        if ep == "chat":
            # vLLM (chat): exactly top_logprobs entries, ranked
            self.assertEqual(count, 3)
        else:
            # vLLM (completions): a {token text: logprob} dict of the top k
            # plus the sampled token (texts that decode alike share a key)
            self.assertTrue(1 <= count <= 4, count)
        if tok in top and "\ufffd" not in tok:
            self.assertAlmostEqual(top[tok], lp, places=4)
        self.assertLessEqual(sum(math.exp(v) for v in top.values()), 1.0 + 1e-4)
    # forced ASCII tokens: the token strings spell the text
    r = self.request(ep, stream, logit_bias={str(self.X): 100}, max_tokens=3, ignore_eos=True,
                     **self.logprobs_args(ep, 1))
    self.assertEqual(r.choice().text, "zzz")
    self.assertEqual(r.choice().tokens, ["z", "z", "z"])


@case()
def logprobs_validated(self, ep, stream):
    # vLLM: at most 20 logprobs (the default --max-logprobs); chat needs
    # logprobs=true for top_logprobs
    if ep == "chat":
        self.refused(ep, stream, "top_logprobs", max_tokens=1, logprobs=True, top_logprobs=21)
        self.refused(ep, stream, "top_logprobs", max_tokens=1, top_logprobs=2)
    else:
        self.refused(ep, stream, "logprobs", max_tokens=1, logprobs=21)


@case(endpoints=("chat",))
def logprobs_without_top(self, ep, stream):
    # OpenAI/vLLM: logprobs=true alone gives the sampled tokens, empty top lists
    r = self.request(ep, stream, max_tokens=3, ignore_eos=True, logprobs=True)
    ch = r.choice()
    self.assertEqual(len(ch.tokens), 3)
    self.assertEqual(ch.top_logprobs, [{}, {}, {}])


@case(endpoints=("cmpl",))
def text_offset(self, ep, stream):
    # OpenAI/vLLM: text_offset[i] is the character offset of token i in the
    # returned text (next = previous + len(token) in characters, not bytes),
    # the same streamed and not
    r = self.request(ep, stream, temperature=0, max_tokens=12, ignore_eos=True, logprobs=1,
                     skip_special_tokens=False)
    ch = r.choice()
    self.assertEqual(ch.text_offset[0], 0)
    for i in range(1, len(ch.tokens)):
        self.assertEqual(ch.text_offset[i], ch.text_offset[i - 1] + len(ch.tokens[i - 1]))
    other = self.request(ep, not stream, temperature=0, max_tokens=12, ignore_eos=True,
                         logprobs=1, skip_special_tokens=False).choice()
    self.assertEqual(other.tokens, ch.tokens)
    self.assertEqual(other.text_offset, ch.text_offset)
    # a non-ASCII token: the pad token's text has 3-byte characters
    r = self.request(ep, stream, logit_bias={str(self.PAD["id"]): 100}, max_tokens=3,
                     ignore_eos=True, logprobs=1, skip_special_tokens=False).choice()
    width = len(self.PAD["content"])
    self.assertEqual(r.text_offset, [0, width, 2 * width])


# --- prompt handling -----------------------------------------------------------

@case(endpoints=("cmpl",))
def echo(self, ep, stream):
    # vLLM: echo puts the prompt before the generated text
    r = self.request(ep, stream, echo=True, logit_bias={str(self.X): 100}, max_tokens=2,
                     ignore_eos=True)
    self.assertEqual(r.choice().text, PROMPT + "zz")


@case(endpoints=("cmpl",))
def echo_logprobs_max_tokens_0(self, ep, stream):
    # vLLM: echo + max_tokens 0 + logprobs is the loglikelihood request of
    # evaluation harnesses: the text is the prompt, logprobs cover every
    # prompt token, the first one without a logprob (null)
    r = self.request(ep, stream, echo=True, max_tokens=0, logprobs=1)
    ch = r.choice()
    self.assertEqual(ch.text, PROMPT)
    n_prompt = r.usage.prompt_tokens
    self.assertEqual(len(ch.tokens), n_prompt)
    self.assertIsNone(ch.token_logprobs[0])
    for lp in ch.token_logprobs[1:]:
        self.assertLessEqual(lp, 0.0)
    # echo + logprobs + generation: prompt tokens then generated ones
    r = self.request(ep, stream, echo=True, max_tokens=2, logprobs=1, ignore_eos=True,
                     logit_bias={str(self.X): 100})
    ch = r.choice()
    self.assertEqual(len(ch.tokens), n_prompt + 2)
    self.assertEqual(ch.tokens[-2:], ["z", "z"])
    self.assertEqual(ch.text_offset[-1], ch.text_offset[-2] + 1)


@case(endpoints=("chat",))
def echo_chat(self, ep, stream):
    # vLLM (chat): echo prepends the last message's content when its role is
    # the response's role (here continuing an assistant message)
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Sure"}]
    r = self.request(ep, stream, messages=msgs, echo=True, add_generation_prompt=False,
                     continue_final_message=True, logit_bias={str(self.X): 100},
                     max_tokens=2, ignore_eos=True)
    self.assertEqual(r.choice().text, "Surezz")


@case(streams=(False,))
def prompt_logprobs(self, ep, stream):
    # vLLM: prompt_logprobs=k gives, per prompt position, {token id: {logprob,
    # rank, decoded_token}} with the prompt's own token and the top k; the
    # first position is null.  Completions put it on the choice, chat on the response
    if ep == "chat":
        ids = self.post("/tokenize", {"messages": [{"role": "user", "content": PROMPT}]})["tokens"]
    else:
        ids = self.tok(PROMPT, special=True)
    r = self.request(ep, stream, max_tokens=1, prompt_logprobs=2)
    pl = (_extras(r.raw) if ep == "chat" else r.choice().extra).get("prompt_logprobs")
    self.assertIsInstance(pl, list)
    self.assertEqual(len(pl), len(ids))
    self.assertEqual(len(ids), r.usage.prompt_tokens)
    self.assertIsNone(pl[0])
    for tid, entry in zip(ids[1:], pl[1:]):
        self.assertIn(str(tid), entry)
        self.assertLessEqual(len(entry), 3)
        for v in entry.values():
            self.assertLessEqual(v["logprob"], 0.0)
            self.assertGreaterEqual(v["rank"], 1)
            self.assertIn("decoded_token", v)
    if ep == "cmpl":
        # the same numbers as echo's token_logprobs
        e = self.request(ep, stream, echo=True, max_tokens=0, logprobs=1).choice()
        for tid, entry, lp in zip(ids[1:], pl[1:], e.token_logprobs[1:]):
            self.assertAlmostEqual(entry[str(tid)]["logprob"], lp, places=4)


@case(streams=(True,))
def prompt_logprobs_stream_refused(self, ep, stream):
    # vLLM: prompt_logprobs are not available when stream=true
    self.refused(ep, stream, "prompt_logprobs", max_tokens=1, prompt_logprobs=1)


@case()
def truncate_prompt_tokens(self, ep, stream):
    # vLLM: truncate_prompt_tokens=k keeps the last k prompt tokens
    full = self.request(ep, stream, prompt=LONG_PROMPT, max_tokens=1).usage.prompt_tokens
    self.assertGreater(full, 6)
    r = self.request(ep, stream, prompt=LONG_PROMPT, max_tokens=1, truncate_prompt_tokens=5)
    self.assert_usage(r, prompt=5)
    if ep == "cmpl":
        # the same greedy text as a prompt of the last 5 token ids
        last = self.tok(LONG_PROMPT, special=True)[-5:]
        cut = self.request(ep, stream, prompt=LONG_PROMPT, temperature=0, max_tokens=4,
                           ignore_eos=True, truncate_prompt_tokens=5).choice().text
        ids = self.request(ep, stream, prompt=last, temperature=0, max_tokens=4,
                           ignore_eos=True).choice().text
        self.assertEqual(cut, ids)


@case(endpoints=("cmpl",))
def add_special_tokens(self, ep, stream):
    # vLLM (completions): add_special_tokens=true (the default) adds BOS
    on = self.request(ep, stream, max_tokens=1).usage.prompt_tokens
    off = self.request(ep, stream, max_tokens=1, add_special_tokens=False).usage.prompt_tokens
    self.assertEqual(on, off + 1)


@case(endpoints=("chat",))
def add_special_tokens_chat(self, ep, stream):
    # vLLM (chat): the template writes BOS itself, so add_special_tokens
    # defaults to false; true makes the tokenizer add a second BOS
    off = self.request(ep, stream, max_tokens=1).usage.prompt_tokens
    on = self.request(ep, stream, max_tokens=1, add_special_tokens=True).usage.prompt_tokens
    self.assertEqual(on, off + 1)


@case(endpoints=("chat",))
def add_generation_prompt(self, ep, stream):
    # vLLM (chat): add_generation_prompt (default true) ends the prompt with
    # the assistant's turn opener; false leaves it out
    on = self.request(ep, stream, max_tokens=1).usage.prompt_tokens
    off = self.request(ep, stream, max_tokens=1, add_generation_prompt=False).usage.prompt_tokens
    self.assertLess(off, on)


@case(endpoints=("chat",))
def continue_final_message(self, ep, stream):
    # vLLM (chat): continue_final_message leaves the last (assistant) message
    # open, without its end-of-turn token; both it and add_generation_prompt is a 400
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Sure"}]
    closed = self.request(ep, stream, messages=msgs, max_tokens=1,
                          add_generation_prompt=False).usage.prompt_tokens
    open_ = self.request(ep, stream, messages=msgs, max_tokens=1, add_generation_prompt=False,
                         continue_final_message=True).usage.prompt_tokens
    self.assertLess(open_, closed)
    self.refused(ep, stream, "continue_final_message", messages=msgs, max_tokens=1,
                 add_generation_prompt=True, continue_final_message=True)


# --- streaming -----------------------------------------------------------------

@case(streams=(True,))
def stream_options_include_usage(self, ep, stream):
    # vLLM: include_usage adds one last chunk with usage and no choices;
    # every other chunk has usage null.  Without it no chunk has usage
    r = self.request(ep, stream, max_tokens=3, ignore_eos=True,
                     stream_options={"include_usage": True})
    self.assertEqual(r.n_usage_chunks, 1)
    self.assertEqual(r.chunks[-1].choices, [])
    self.assert_usage(r, completion=3)
    r = self.request(ep, stream, max_tokens=3, ignore_eos=True, usage=False)
    self.assertEqual(r.n_usage_chunks, 0)


@case(streams=(True,))
def stream_options_continuous_usage_stats(self, ep, stream):
    # vLLM: continuous_usage_stats puts the running usage on every chunk;
    # applied or refused
    def check(r):
        with_choices = [c for c in r.chunks if c.choices]
        self.assertTrue(with_choices)
        for c in with_choices:
            self.assertIsNotNone(c.usage)
        counts = [c.usage.completion_tokens for c in with_choices]
        self.assertEqual(counts, sorted(counts))
        self.assertEqual(r.usage.completion_tokens, 3)
    self.applied_or_refused(ep, stream, ("stream_options", "stream_options.continuous_usage_stats"),
                            check, max_tokens=3, ignore_eos=True,
                            stream_options={"include_usage": True,
                                            "continuous_usage_stats": True})


@case(streams=(False,))
def stream_options_without_stream(self, ep, stream):
    # vLLM: "Stream options can only be defined when `stream=True`."
    self.refused(ep, stream, "stream_options", max_tokens=1,
                 stream_options={"include_usage": True})


# --- refused: beam search, suffix, structured outputs, ... ----------------------

@case(endpoints=("cmpl",))
def best_of(self, ep, stream):
    # vLLM's V1 engine: best_of 1 (= n) is accepted; "vLLM V1 does not yet
    # support best_of" for anything above 1, even when it equals n
    r = self.request(ep, stream, best_of=1, max_tokens=1)
    self.assertEqual(len(r.choices), 1)
    self.refused(ep, stream, "best_of", best_of=2, n=2, max_tokens=1)
    self.refused(ep, stream, "best_of", best_of=3, max_tokens=1)


@case(endpoints=("cmpl",))
def suffix(self, ep, stream):
    # vLLM: "suffix is not currently supported"
    self.refused(ep, stream, "suffix", suffix="tail", max_tokens=1)


@case()
def use_beam_search(self, ep, stream):
    # this project has no beam search: refused rather than ignored
    self.refused(ep, stream, "use_beam_search", use_beam_search=True, max_tokens=1)
    r = self.request(ep, stream, use_beam_search=False, max_tokens=1)
    self.assertEqual(len(r.choices), 1)


@case()
def response_format(self, ep, stream):
    # structured output (docs/perf/structured.md): json_schema and
    # json_object constrain the text; {"type": "text"} is no constraint;
    # structural_tag and unknown types are refused
    import json as _json
    import re as _re
    schema = {"type": "object", "properties": {"c": {"enum": ["x", "y"]},
                                               "n": {"type": "integer", "minimum": 0,
                                                     "maximum": 9}},
              "required": ["c", "n"]}
    r = self.request(ep, stream, max_tokens=40, response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}},
        structured_outputs={"disable_any_whitespace": True})
    self.assertRegex(r.choice().text, r'^\{"c": "[xy]", "n": [0-9]\}$')
    r = self.request(ep, stream, max_tokens=3, response_format={"type": "json_object"})
    self.assertTrue(r.choice().text.startswith("{"), r.choice().text)
    self.refused(ep, stream, "response_format", max_tokens=1,
                 response_format={"type": "yaml"})
    r = self.request(ep, stream, max_tokens=1, response_format={"type": "text"})
    self.assertEqual(len(r.choices), 1)


# vLLM's guided_* and structured_outputs constrain the output (one case per
# parameter, each checked against its constraint); structural tags are
# refused, naming the parameter
GUIDED = {"guided_json": ({"enum": ["yes", "no"]}, r'^"(yes|no)"$'),
          "guided_regex": ("[a-c]{2}", r"^[a-c]{2}$"),
          "guided_choice": (["yes", "no"], r"^(yes|no)$"),
          "structured_outputs": ({"choice": ["yes", "no"]}, r"^(yes|no)$"),
          "guided_grammar": ('root ::= "a" [bc]{2}', r"^a[bc]{2}$")}
REFUSED_GUIDES = {"structural_tag": '{"type": "structural_tag", "structures": [], "triggers": []}'}


def _guided_case(name, value, pattern):
    def fn(self, ep, stream):
        r = self.request(ep, stream, max_tokens=8, **{name: value})
        self.assertRegex(r.choice().text, pattern)
    fn.__name__ = name
    return case()(fn)


def _refused_case(name, value):
    def fn(self, ep, stream):
        self.refused(ep, stream, name, max_tokens=1, **{name: value})
    fn.__name__ = name
    return case()(fn)


for _n, (_v, _p) in GUIDED.items():
    _guided_case(_n, _v, _p)
for _n, _v in REFUSED_GUIDES.items():
    _refused_case(_n, _v)


@case()
def logits_processors(self, ep, stream):
    # vLLM refuses per-request logits_processors unless the server allows
    # them (--logits-processor-pattern); this server has no such option
    self.refused(ep, stream, "logits_processors", max_tokens=1,
                 logits_processors=["some.module:Processor"])


@case()
def priority(self, ep, stream):
    # vLLM: priority other than 0 is refused unless priority scheduling is on
    r = self.request(ep, stream, priority=0, max_tokens=1)
    self.assertEqual(len(r.choices), 1)
    self.refused(ep, stream, "priority", priority=1, max_tokens=1)


@case()
def user(self, ep, stream):
    # OpenAI/vLLM: user is accepted (a label for abuse monitoring), no effect
    a = self.request(ep, stream, user="someone", temperature=0, max_tokens=4, ignore_eos=True)
    self.assertEqual(a.choice().text, self.greedy(ep, stream, n_tokens=4))


@case()
def return_tokens_as_token_ids(self, ep, stream):
    # vLLM: with logprobs, tokens are written "token_id:<id>"; outside this
    # project's scope: applied or refused
    def check(r):
        self.assertEqual(r.choice().tokens, ["token_id:%d" % self.X] * 2)
    self.applied_or_refused(ep, stream, "return_tokens_as_token_ids", check,
                            return_tokens_as_token_ids=True, max_tokens=2, ignore_eos=True,
                            logit_bias={str(self.X): 100}, **self.logprobs_args(ep, 1))


@case()
def request_id(self, ep, stream):
    # vLLM: the response id is "chatcmpl-<request_id>" / "cmpl-<request_id>"
    # (_base_request_id; an X-Request-Id header would win)
    r = self.request(ep, stream, request_id="conformance-42", max_tokens=2)
    want = ("chatcmpl-" if ep == "chat" else "cmpl-") + "conformance-42"
    ids = {c.id for c in r.chunks} if stream else {r.raw.id}
    self.assertEqual(ids, {want})


@case()
def return_token_ids(self, ep, stream):
    # vLLM: return_token_ids adds the prompt's and the output's token ids;
    # outside this project's scope: applied or refused
    def check(r):
        if stream:
            got = [i for c in r.chunks for ch in c.choices
                   for i in (_extras(ch).get("token_ids") or [])]
        else:
            got = r.choice().extra.get("token_ids")
        self.assertEqual(got, [self.X] * 2)
    self.applied_or_refused(ep, stream, "return_token_ids", check, return_token_ids=True,
                            max_tokens=2, ignore_eos=True, logit_bias={str(self.X): 100})


@case(endpoints=("chat",))
def chat_template(self, ep, stream):
    # vLLM refuses a request's own chat template unless the server runs with
    # --trust-request-chat-template; this server has no such option
    self.refused(ep, stream, "chat_template", max_tokens=1,
                 chat_template="{% for m in messages %}{{ m['content'] }}{% endfor %}")


@case(endpoints=("cmpl",))
def prompt_embeds(self, ep, stream):
    # vLLM refuses prompt_embeds unless started with --enable-prompt-embeds
    self.refused(ep, stream, "prompt_embeds", max_tokens=1, prompt_embeds="AAAA")


@case(endpoints=("chat",))
def chat_template_kwargs(self, ep, stream):
    # vLLM merges chat_template_kwargs over the template's arguments:
    # {"add_generation_prompt": false} renders as add_generation_prompt=false
    off = self.request(ep, stream, max_tokens=1, add_generation_prompt=False)
    kw = self.request(ep, stream, max_tokens=1,
                      chat_template_kwargs={"add_generation_prompt": False})
    on = self.request(ep, stream, max_tokens=1)
    self.assertEqual(kw.usage.prompt_tokens, off.usage.prompt_tokens)
    self.assertLess(kw.usage.prompt_tokens, on.usage.prompt_tokens)


@case(endpoints=("chat",))
def documents(self, ep, stream):
    # vLLM passes documents to the chat template; DeepSeek-V3's template
    # does not read them, so the prompt is unchanged
    base = self.request(ep, stream, max_tokens=1).usage.prompt_tokens
    r = self.request(ep, stream, max_tokens=1,
                     documents=[{"title": "t", "text": "a document"}])
    self.assertEqual(r.usage.prompt_tokens, base)


@case(endpoints=("chat",))
def reasoning_effort(self, ep, stream):
    # vLLM checks the literal (low/medium/high); only harmony models read it,
    # so for DeepSeek the prompt and output are unchanged
    base = self.request(ep, stream, temperature=0, max_tokens=3, ignore_eos=True)
    r = self.request(ep, stream, temperature=0, max_tokens=3, ignore_eos=True,
                     reasoning_effort="low")
    self.assertEqual(r.usage.prompt_tokens, base.usage.prompt_tokens)
    self.assertEqual(r.choice().text, base.choice().text)
    self.refused(ep, stream, "reasoning_effort", max_tokens=1, reasoning_effort="extreme")


@case()
def length_penalty(self, ep, stream):
    # vLLM reads length_penalty in beam search only: no effect on sampling
    self.assertEqual(self.request(ep, stream, length_penalty=2.0, temperature=0, max_tokens=4,
                                  ignore_eos=True).choice().text,
                     self.greedy(ep, stream, n_tokens=4))


@case()
def vllm_xargs(self, ep, stream):
    # vLLM hands vllm_xargs to custom logits processors only: no effect here
    self.assertEqual(self.request(ep, stream, vllm_xargs={"k": 1}, temperature=0, max_tokens=4,
                                  ignore_eos=True).choice().text,
                     self.greedy(ep, stream, n_tokens=4))


def _prefix_hits(self):
    for name in ("vllm:prefix_cache_hits_total", "dsa:prefix_cache_hits_total"):
        v = self.srv.metric(name)
        if v is not None:
            return v
    self.fail("no prefix cache hit counter in /metrics")


@case()
def cache_salt(self, ep, stream):
    # vLLM salts the prefix cache with it: a prompt cached under one salt is
    # not reused under another (the output never changes); applied or refused
    prompt = " ".join("salted%d" % i for i in range(150)) + " " + ep + str(stream)
    def check(r):
        time.sleep(0.2)
        h0 = _prefix_hits(self)
        self.request(ep, stream, prompt=prompt, cache_salt="salt-B-0123456789", max_tokens=1)
        time.sleep(0.2)
        self.assertEqual(_prefix_hits(self), h0, "a prefix cached under another salt was reused")
        self.request(ep, stream, prompt=prompt, cache_salt="salt-B-0123456789", max_tokens=1)
        self.assertTrue(wait_for(lambda: _prefix_hits(self) > h0, 10),
                        "the same salt should hit the cache")
    self.applied_or_refused(ep, stream, "cache_salt", check, prompt=prompt,
                            cache_salt="salt-A-0123456789", max_tokens=1)


register_cases()
Conformance = conformance.Conformance   # unittest.main looks for tests on this module


if __name__ == "__main__":
    unittest.main(verbosity=2)
