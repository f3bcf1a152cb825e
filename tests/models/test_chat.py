"""Chat rendering, the reply cut and speaker choice, on the real tiny model (real jieba and LSTM)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from models.characters import CharacterList
from models.chat import NEUTRAL_USER, Chat, ChatError, Message
from models.decoding import Decoder, SamplingParams
from models.trained import TrainedModel


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> TrainedModel:
    return TrainedModel.load(tiny_model_dir)


@pytest.fixture(scope="module")
def chat(model: TrainedModel) -> Chat:
    return Chat(
        Decoder(model.network, model.vectors, model.tokenizer), model.characters, max_prompt_chars=200
    )


def test_render_is_the_novels_dialogue_form(chat: Chat) -> None:
    prompt = chat.render(
        [Message("user", "你好"), Message("assistant", "好“呀”"), Message("user", "吃饭了吗？")],
        character="黛玉",
    )
    asked = chat.characters.speech(question=True)  # 问道： in a novel that asks so
    assert prompt.text == f"{NEUTRAL_USER}道：“你好”黛玉道：“好呀”{NEUTRAL_USER}{asked}“吃饭了吗？”黛玉道：“"
    assert (prompt.character, prompt.messages_kept, prompt.messages_total) == ("黛玉", 3, 3)


def test_character_from_the_system_message_alias_and_default(chat: Chat, model: TrainedModel) -> None:
    system = [Message("system", "你是林黛玉，说话要客气。我是宝玉"), Message("user", "妹妹好")]
    prompt = chat.render(system)
    assert prompt.character == "黛玉" and prompt.user_character == "宝玉"
    assert chat.render([Message("user", "你好")]).character == model.characters.most_frequent.name
    assert chat.render([Message("user", "你好")], user_character="小明").text.startswith("小明道：“你好”")


@pytest.mark.parametrize(
    ("messages", "kwargs", "param"),
    [
        ([], {}, "messages"),
        ([Message("user", "  ")], {}, "messages[0].content"),
        ([Message("tool", "x")], {}, "messages[0].role"),
        ([Message("user", "你好")], {"character": "孙悟空"}, "character"),
        ([Message("user", "你好")], {"user_character": "“引号”"}, "user_character"),
        ([Message("user", "你好")], {"user_character": "小 明"}, "user_character"),
    ],
)
def test_bad_conversations_name_the_field(chat: Chat, messages: list, kwargs: dict, param: str) -> None:
    with pytest.raises(ChatError) as raised:
        chat.render(messages, **kwargs)
    assert raised.value.param == param
    if param == "character":
        assert "宝玉" in str(raised.value)  # the error lists the known speakers


def test_long_history_keeps_the_most_recent_turns_that_fit(chat: Chat) -> None:
    messages = [Message("user" if i % 2 == 0 else "assistant", f"第{i}句话") for i in range(50)]
    prompt = chat.render(messages)
    assert len(prompt.text) <= chat.max_prompt_chars
    assert 1 < prompt.messages_kept < 50 and "第49句话" in prompt.text and "第0句话" not in prompt.text
    long_message = chat.render([Message("user", "很长的话" * 100)])
    assert len(long_message.text) <= chat.max_prompt_chars and long_message.messages_kept == 1


def test_reply_is_inside_the_quotes_and_reproducible(chat: Chat) -> None:
    params = SamplingParams(max_new_tokens=60, do_sample=True, temperature=0.9, seed=7)
    messages = [Message("user", "今天天气真好，咱们去打羽毛球吧")]  # modern words the novel never uses
    first = chat.respond(messages, params)
    again = chat.respond(messages, params)
    assert first.text == again.text and first.text
    assert "”" not in first.text
    generated = first.generation.text
    if first.finish_reason == "stop":
        assert generated.split("”")[0].strip() == first.text
    else:
        assert len(first.generation.tokens) == 60


def test_the_closing_quote_is_never_the_first_token(chat: Chat, model: TrainedModel) -> None:
    # Whatever the model prefers after an opening quote, the first token is not a closing one.
    closing = {i for i, word in enumerate(model.vectors.words) if "”" in word}
    for seed in range(20):
        reply = chat.respond(
            [Message("user", "嗯")], SamplingParams(max_new_tokens=5, do_sample=True, seed=seed)
        )
        assert reply.generation.tokens[0].id not in closing and reply.text


def test_a_reply_never_opens_a_new_quotation(chat: Chat, model: TrainedModel) -> None:
    # Found on the default model: a reply drifted into narration (说：“...) and left a dangling opening mark.
    opening = {i for i, word in enumerate(model.vectors.words) if "“" in word}
    assert opening and opening <= set(chat.sampling(SamplingParams()).banned_ids)
    for seed in range(10):
        params = SamplingParams(max_new_tokens=40, do_sample=True, temperature=1.5, seed=seed)
        reply = chat.respond([Message("user", "你说什么？")], params)
        assert not opening & {token.id for token in reply.generation.tokens}, reply.generation.text
        assert "“" not in reply.text


def test_a_model_without_characters_uses_the_narrator_form(model: TrainedModel) -> None:
    decoder = Decoder(model.network, model.vectors, model.tokenizer)
    chat = Chat(decoder, CharacterList())
    assert chat.render([Message("user", "你好")]).text == "有人问道：“你好”答道：“"
    with pytest.raises(ChatError, match="no characters"):
        chat.render([Message("user", "你好")], character="宝玉")


def test_grounding_renders_the_novels_exchanges_before_the_conversation(model: TrainedModel) -> None:
    assert model.memory is not None and len(model.memory)
    chat = Chat(Decoder(model.network, model.vectors, model.tokenizer), model.characters, memory=model.memory)
    exchange = next(
        e for e in model.memory.exchanges if len(e.said) >= 6 and len(e.said + e.how + e.answer) <= 100
    )
    prompt = chat.render([Message("user", exchange.said)], character=exchange.answerer)
    assert prompt.grounding and any(r.exchange == exchange for r in prompt.grounding)
    lines = "".join(chat.render_exchange(r) for r in reversed(prompt.grounding))
    conversation = chat.render([Message("user", exchange.said)], character=exchange.answerer, grounded=False)
    assert prompt.text == lines + conversation.text  # recalled lines first, then the conversation as before
    assert f"“{exchange.said}”" in lines and f"“{exchange.answer}”" in lines
    assert len(prompt.text) <= chat.max_prompt_chars


def test_a_grounded_prompt_is_read_as_its_whole_text_with_each_recalled_lines_cut_kept(
    model: TrainedModel,
) -> None:
    decoder = Decoder(model.network, model.vectors, model.tokenizer)
    chat = Chat(decoder, model.characters, memory=model.memory)
    exchanges = [e for e in model.memory.exchanges if len(e.said) >= 4][:40]
    grounded = 0
    for index, exchange in enumerate(exchanges):
        turns = [Message("user", exchange.said)]
        if index % 2:  # a longer conversation, with words the tokenizer may cut across the quote marks
            turns = [Message("user", "宝玉 ok 123"), Message("assistant", exchange.answer), *turns]
        prompt = chat.render(turns, character=exchange.answerer)
        grounded += bool(prompt.grounding)
        read, whole = chat.encode(prompt), decoder.encode(prompt.text)
        assert (read.tokens, read.ids, read.unknown) == (whole.tokens, whole.ids, whole.unknown)
        assert chat.prepare(prompt, SamplingParams(seed=1)).prompt.ids == whole.ids
    assert grounded > 30
    # Every line recalled so far has its cut kept: a prompt of seen lines leaves only its conversation.
    prompt = chat.render([Message("user", exchanges[0].said)], character=exchanges[0].answerer)
    conversation = chat.render([Message("user", exchanges[0].said)], exchanges[0].answerer, grounded=False)
    assert chat.uncut_chars(prompt) == len(conversation.text) < len(prompt.text)


def test_turns_use_the_novels_speech_form(model: TrainedModel) -> None:
    characters = replace(model.characters, speech_verb="说", speech_mark="，", question_verb="问")
    chat = Chat(Decoder(model.network, model.vectors, model.tokenizer), characters)
    prompt = chat.render([Message("user", "你好"), Message("assistant", "好"), Message("user", "去吗？")],
                         character="黛玉")  # fmt: skip
    assert prompt.text == f"{NEUTRAL_USER}说，“你好”黛玉说，“好”{NEUTRAL_USER}问，“去吗？”黛玉说，“"
