"""`Privacy`: what /forget-me shows and deletes, and the paged read an export uses."""

from pathlib import Path

from bot.store import MessageStatus, Role, SceneMember, Store, UserData, VoteChoice

from ._raw import query


async def _shared_thread(store: Store) -> int:
    """User 2's thread: 2 asks, 1 asks (answered alone), 2 and 1 ask together (answered together)."""
    thread = await store.get_or_create_conversation("thread:2", owner_id=2)
    for role, content, author in [
        (Role.USER, "two-a", 2),
        (Role.ASSISTANT, "reply-to-two", None),
        (Role.USER, "one-a", 1),
        (Role.ASSISTANT, "reply-to-one", None),
        (Role.USER, "two-b", 2),
        (Role.USER, "one-b", 1),
        (Role.ASSISTANT, "reply-to-both", None),
    ]:
        await store.add_message(thread.id, role=role, content=content, author_id=author)
    return thread.id


async def _character(store: Store, name: str, creator_id: int) -> None:
    await store.characters.create(
        guild_id=9, name=name, description="d", personality="p", speaking_style="s", creator_id=creator_id
    )


async def test_forget_keeps_a_shared_thread_well_formed(store: Store) -> None:
    """In someone else's thread the user's messages and the replies to them alone go; the rest stays in order."""
    thread = await _shared_thread(store)
    await store.privacy.forget(1)
    history = [m.content for m in await store.history(thread, limit=50)]
    assert history == ["two-a", "reply-to-two", "two-b", "reply-to-both"]


async def test_forget_keeps_an_owned_thread_others_wrote_in(store: Store, db_path: Path) -> None:
    """A thread the user started but others wrote in stays for them, no longer owned by the user."""
    thread = await store.get_or_create_conversation("thread:8", owner_id=1)
    await store.add_message(thread.id, role=Role.USER, content="one-asks", author_id=1)
    await store.add_message(thread.id, role=Role.ASSISTANT, content="reply-to-one")
    await store.add_message(thread.id, role=Role.USER, content="two-asks", author_id=2)
    await store.add_message(thread.id, role=Role.ASSISTANT, content="reply-to-two")
    forgotten = await store.privacy.forget(1)
    assert (forgotten.messages, forgotten.conversations) == (2, 0)
    assert [m.content for m in await store.history(thread.id, limit=50)] == ["two-asks", "reply-to-two"]
    assert query(db_path, "SELECT owner_id FROM conversations WHERE key = 'thread:8'") == [(None,)]


async def test_forget_deletes_the_characters_they_created(store: Store, db_path: Path) -> None:
    """The user's characters go, also from the scenes that cast them; other people's characters stay."""
    await _character(store, "Aria", 1)
    await _character(store, "Bo", 2)
    aria = await store.characters.get(9, "Aria")
    assert aria is not None
    await store.scenes.create(thread_id=77, guild_id=9, creator_id=2, setting="a cafe", cast=[SceneMember(aria.id)])
    assert (await store.privacy.forget(1)).characters == ("Aria",)
    assert query(db_path, "SELECT name FROM characters") == [("Bo",)]
    assert query(db_path, "SELECT COUNT(*) FROM scene_characters") == [(0,)]


async def test_summary_counts_what_forget_then_deletes(store: Store) -> None:
    """The counts shown before confirming are the counts deleted; the summary itself changes nothing."""
    await _shared_thread(store)
    dm = await store.get_or_create_conversation("dm:1", owner_id=1)
    await store.add_message(dm.id, role=Role.USER, content="secret", author_id=1)
    await store.add_message(dm.id, role=Role.ASSISTANT, content="reply")
    await store.sources.add(
        scope_id=5, guild_id=9, title="mine", url=None, author_id=1, author_name="one", text="t", passages=["t"]
    )
    await store.riddles.add(author_id=1, question="What has keys?", answer="a piano")
    await store.scenes.create(thread_id=77, guild_id=9, creator_id=2, setting="a cafe", cast=[])
    await store.scenes.add_human(77, 1, "one")
    await _character(store, "Aria", 1)
    expected = UserData(
        messages=5, conversations=1, sources=1, riddles=1, quiz_answers=0, votes=0, scenes=1, characters=("Aria",)
    )
    assert await store.privacy.summary(1) == expected
    assert await store.privacy.summary(1) == expected
    assert await store.privacy.forget(1) == expected
    assert (await store.privacy.summary(1)).empty


async def test_conversation_keys_lists_owned_and_joined_conversations(store: Store) -> None:
    """The keys are the conversations the user owns or wrote in, and no other."""
    await _shared_thread(store)
    await store.get_or_create_conversation("dm:1", owner_id=1)
    await store.get_or_create_conversation("dm:3", owner_id=3)
    assert await store.privacy.conversation_keys(1) == ["dm:1", "thread:2"]


async def test_messages_page_reads_every_status_in_pages(store: Store) -> None:
    """Pages follow each other by id, and cancelled or failed messages are part of them."""
    conversation = await store.get_or_create_conversation("dm:1", owner_id=1)
    for status in (MessageStatus.OK, MessageStatus.CANCELLED, MessageStatus.FAILED):
        await store.add_message(conversation.id, role=Role.ASSISTANT, content=status.value, status=status)
    first = await store.privacy.messages_page(conversation.id, limit=2)
    rest = await store.privacy.messages_page(conversation.id, after=first[-1].id, limit=2)
    assert [m.content for m in first + rest] == ["ok", "cancelled", "failed"]


FORGOTTEN = 987_654_321_012
"""A user id no other column of the test data can hold by chance."""


async def _everything_of(store: Store, user_id: int) -> None:
    """``user_id`` in every place the store can hold a person: messages, ownership, sources, riddles (asked and
    solved), quizzes (authored and answered), comparisons and votes, characters, scenes (created and joined)."""
    dm = await store.get_or_create_conversation(f"dm:{user_id + 1}", owner_id=user_id)
    await store.add_message(dm.id, role=Role.USER, content="secret", author_id=user_id, external_ids=[5001])
    shared = await store.get_or_create_conversation("thread:70", owner_id=user_id)
    await store.add_message(shared.id, role=Role.USER, content="mine", author_id=user_id)
    await store.add_message(shared.id, role=Role.USER, content="theirs", author_id=2)
    await store.sources.add(
        scope_id=5, guild_id=9, title="t", url=None, author_id=user_id, author_name="me", text="t", passages=["t"]
    )
    await store.riddles.add(author_id=user_id, question="q?", answer="a")
    riddle = await store.riddles.add(author_id=2, question="q2?", answer="a2")
    await store.riddles.solve(riddle.id, user_id, "me")
    for author in (user_id, 2):
        quiz = await store.quizzes.create(
            guild_id=9,
            channel_id=5,
            author_id=author,
            topic="cats",
            question="q?",
            options="abcd",
            answer="A",
            seconds=60,
        )
        await store.quizzes.answer(quiz.id, user_id, "A")
        await store.quizzes.answer(quiz.id, 3, "B")
    comparison = await store.votes.add_comparison(["x", "y"], seed=1, blind=True, author_id=user_id)
    await store.votes.vote(comparison.id, user_id, VoteChoice.A)
    await _character(store, "Aria", user_id)
    await store.scenes.create(thread_id=70, guild_id=9, creator_id=user_id, setting="a cafe", cast=[])
    await store.scenes.add_human(70, user_id, "me")
    await store.scenes.add_human(70, 2, "two")


def _columns_holding(db_path: Path, value: int) -> list[str]:
    """Every ``table.column`` of the database (FTS shadow tables aside) with a row equal to ``value``."""
    found = []
    tables = query(db_path, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    for (table,) in tables:
        if table.startswith("source_passages"):
            continue  # the FTS index holds passages' text only (they go with their source, by trigger)
        for column in query(db_path, f"PRAGMA table_info({table})"):
            name = column[1]
            if query(db_path, f'SELECT COUNT(*) FROM "{table}" WHERE "{name}" = ?', (value,)) != [(0,)]:
                found.append(f"{table}.{name}")
    return found


async def test_forget_leaves_the_user_id_in_no_column_at_all(store: Store, db_path: Path) -> None:
    """After forgetting, no column of any table still holds the user's id (scenes they started, quizzes too)."""
    await _everything_of(store, FORGOTTEN)
    assert len(_columns_holding(db_path, FORGOTTEN)) >= 10  # the scan sees the id where it was put
    await store.privacy.forget(FORGOTTEN)
    assert _columns_holding(db_path, FORGOTTEN) == []


async def test_forget_keeps_a_scene_they_started_for_the_others_in_it(store: Store, db_path: Path) -> None:
    """A scene the user started stays for the people in it, without its creator; their place in it goes."""
    await _everything_of(store, FORGOTTEN)
    await store.privacy.forget(FORGOTTEN)
    scene = await store.scenes.get(70)
    assert scene is not None
    assert (scene.creator_id, [h.user_id for h in scene.humans]) == (0, [2])


async def test_forget_deletes_the_quizzes_they_asked_for_with_their_answers(store: Store, db_path: Path) -> None:
    """A quiz the user asked for (its topic is their words) goes with its answers; other quizzes keep theirs."""
    await _everything_of(store, FORGOTTEN)
    await store.privacy.forget(FORGOTTEN)
    assert query(db_path, "SELECT author_id FROM quizzes") == [(2,)]
    assert query(db_path, "SELECT user_id FROM quiz_answers") == [(3,)]
