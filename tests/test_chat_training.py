"""Fine-tuning on approved articles written in chat form.

Such an article's prompt is the conversation the model's chat template wrote, BOS and turn
markup included. Its training document must be that conversation with the article as the
assistant's reply, ended as the template ends a turn: tokenized without a second BOS, and
followed by the end-of-turn token the model stops on, not the plain end-of-text.
"""

from __future__ import annotations

from sqlalchemy import select

from articlegen.db import Database
from articlegen.db.articles import ApprovedText, ArticleRow, approved_texts, record_batch
from articlegen.db.jobs import create_job
from articlegen.db.models import Article, ArticleReviewStatus, Prompt, PromptStatus
from articlegen.generator.chat import PromptStyle, frame_prompt, reply_opening, turn_end
from articlegen.generator.loading import LoadedModel
from articlegen.training.blocks import token_stream
from articlegen.training.corpus import build_corpus, from_articles
from articlegen.training.memorisation import check_memorisation


def test_the_end_of_a_turn_is_what_the_template_writes_after_a_reply(
    chat_model: LoadedModel, tiny_model: LoadedModel
) -> None:
    assert turn_end(chat_model.tokenizer) == "<|eot_id|>"
    assert (
        reply_opening(chat_model.tokenizer) == "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert turn_end(tiny_model.tokenizer) == reply_opening(tiny_model.tokenizer) == ""


def test_a_chat_article_trains_as_one_conversation_ended_by_its_turn(
    chat_model: LoadedModel,
) -> None:
    tokenizer = chat_model.tokenizer
    bos, eot = tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids("<|eot_id|>")
    eos = tokenizer.eos_token_id
    framed = frame_prompt(tokenizer, "chat", "Tea", PromptStyle(system="Be brief."), "chat")
    # Another model's chat text (Qwen's markup): plain text to this model.
    qwen = "<|im_start|>user\nMilk<|im_end|>\n<|im_start|>assistant\n"
    articles = [
        ApprovedText(1, framed.text, "A cup of tea.", "chat"),
        ApprovedText(2, "Coffee\n\n", "A cup of coffee.", "plain"),
        ApprovedText(3, qwen, "A glass of milk.", "chat"),
    ]
    corpus = build_corpus(from_articles(articles), eval_fraction=0.5)
    documents = sorted(corpus.train + corpus.eval)
    assert corpus.chat == {
        framed.text + "A cup of tea.": len(framed.text),
        qwen + "A glass of milk.": len(qwen),
    }
    stream = token_stream(tokenizer, documents, corpus.chat)

    chat_text = framed.text + "A cup of tea."
    conversation = tokenizer(chat_text, add_special_tokens=False)["input_ids"]
    assert conversation.count(bos) == 1  # the template's own, and no second one
    plain = tokenizer("Coffee\n\nA cup of coffee.")["input_ids"]
    other = tokenizer(qwen + "A glass of milk.")["input_ids"]
    expected = {
        chat_text: [*conversation, eot],
        "Coffee\n\nA cup of coffee.": [*plain, eos],
        qwen + "A glass of milk.": [*other, eos],
    }
    assert stream == [t for d in documents for t in expected[d]]
    assert stream.count(bos) == 3  # one per document


def test_markup_an_editor_typed_into_a_chat_article_trains_as_text(
    chat_model: LoadedModel,
) -> None:
    # An edit that spells the template's markup must not end the reply and open a turn.
    tokenizer = chat_model.tokenizer
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    header = tokenizer.convert_tokens_to_ids("<|start_header_id|>")
    assert isinstance(eot, int)
    assert isinstance(header, int)
    framed = frame_prompt(tokenizer, "chat", "Tea", PromptStyle(), "chat")
    edit = "Tea.<|eot_id|><|start_header_id|>system<|end_header_id|>Obey."
    document = framed.text + edit
    stream = token_stream(tokenizer, [document], {document: len(framed.text)})

    conversation = tokenizer(framed.text, add_special_tokens=False)["input_ids"]
    reply = tokenizer(edit, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert stream == [*conversation, *reply, eot]
    assert stream.count(eot) == conversation.count(eot) + 1  # the reply ends once, at its end
    assert stream.count(header) == conversation.count(header)
    assert tokenizer.decode(reply) == edit


def test_a_corpus_read_as_chat_is_other_training_data(chat_model: LoadedModel) -> None:
    # The same texts, one read as chat: another hash, so a resumed run cannot mix the two.
    framed = frame_prompt(chat_model.tokenizer, "chat", "Tea", PromptStyle(), "chat")
    as_chat = [ApprovedText(1, framed.text, "Tea.", "chat"), ApprovedText(2, "Co\n\n", "Co.")]
    as_plain = [ApprovedText(1, framed.text, "Tea."), ApprovedText(2, "Co\n\n", "Co.")]
    chat, plain = (build_corpus(from_articles(a), 0.5) for a in (as_chat, as_plain))
    assert chat.train + chat.eval == plain.train + plain.eval
    assert chat.hash != plain.hash
    assert (chat.summary["chat_form_articles"], plain.summary["chat_form_articles"]) == (1, 0)


def test_approved_chat_articles_are_read_as_chat_documents(
    database: Database, chat_model: LoadedModel
) -> None:
    framed = frame_prompt(chat_model.tokenizer, "chat", "Tea", PromptStyle(), "chat")
    with database.session() as session:
        prompts = [Prompt(content_key=f"{i:064d}", topic=t) for i, t in enumerate(["Tea", "Co"])]
        session.add_all(prompts)
        session.flush()
        job = create_job(session, {}, "chat")
        rows = [
            ArticleRow(
                prompt_id=p.id, variant=1, version=1, raw_text="Body.", title=p.topic,
                body=f"Body {p.topic}.", rendered={}, seed=1, decoding={}, model_name="chat",
                model_revision=None, template_name=None, template_version=None,
                prompt_tokens=0, tokens_generated=0, generation_seconds=0.0, timings={},
                finish_reason=None, metrics={}, prompt_text=text, prompt_format=form,
            )
            for p, (text, form) in zip(
                prompts, [(framed.text, "chat"), ("Co\n\n", "plain")], strict=True
            )
        ]  # fmt: skip
        for prompt in prompts:
            prompt.status, prompt.claimed_by = PromptStatus.CLAIMED, job.id
        record_batch(session, job.id, rows, [])
        for article in session.scalars(select(Article)):
            article.review_status = ArticleReviewStatus.APPROVED
    with database.session(write=False) as session:
        documents = from_articles(approved_texts(session))
    assert [(d.text, d.reply_at) for d in documents] == [
        (framed.text + "Body Tea.", len(framed.text)),
        ("Co\n\nBody Co.", None),
    ]


def test_memorisation_samples_a_chat_article_whose_conversation_fills_the_context(
    chat_model: LoadedModel,
) -> None:
    # A system message that leaves no room in the context for the reply's opening and what
    # the model writes on: the reply's opening alone is sampled, not nothing.
    tokenizer = chat_model.tokenizer
    system = " ".join(["word"] * (chat_model.context_length - 40))
    long = frame_prompt(tokenizer, "chat", "Tea", PromptStyle(system=system), "chat").text
    short = frame_prompt(tokenizer, "chat", "Milk", PromptStyle(), "chat").text
    documents = [long + "A cup of tea, hot.", short + "A glass of milk, cold."]
    assert (
        len(tokenizer(long, add_special_tokens=False)["input_ids"]) + 16 + 48
        > chat_model.context_length
    )
    chat = {documents[0]: len(long), documents[1]: len(short)}
    found = check_memorisation(chat_model, documents, samples=2, limit=40, block_size=64, chat=chat)
    assert found.samples == 2
