from pathlib import Path

from bot.store import Role, Store

from ._raw import query


async def _seed(store: Store) -> None:
    """User 1 owns a DM with the bot and also talks in user 2's thread."""
    dm = await store.get_or_create_conversation("dm:1", owner_id=1)
    await store.add_message(dm.id, role=Role.USER, content="secret-in-dm", author_id=1, author_name="one")
    await store.add_message(dm.id, role=Role.ASSISTANT, content="reply-in-dm")
    thread = await store.get_or_create_conversation("thread:2", owner_id=2)
    await store.add_message(thread.id, role=Role.USER, content="hello from two", author_id=2, author_name="two")
    await store.add_message(thread.id, role=Role.USER, content="secret-in-thread", author_id=1, author_name="one")
    await store.add_message(thread.id, role=Role.ASSISTANT, content="reply-in-thread")


async def test_forget_user_leaves_no_row_with_their_author_id(store: Store, db_path: Path) -> None:
    """After forget_user no message by that user remains, as a separate connection sees it."""
    await _seed(store)
    await store.forget_user(1)
    assert query(db_path, "SELECT COUNT(*) FROM messages WHERE author_id = 1") == [(0,)]


async def test_forget_user_deletes_the_conversations_they_own(store: Store, db_path: Path) -> None:
    """forget_user deletes the user's own conversations with every message in them, the bot's included."""
    await _seed(store)
    await store.forget_user(1)
    assert query(db_path, "SELECT COUNT(*) FROM conversations WHERE owner_id = 1") == [(0,)]
    assert query(db_path, "SELECT COUNT(*) FROM messages WHERE content = 'reply-in-dm'") == [(0,)]


async def test_forget_user_keeps_other_users_data(store: Store) -> None:
    """Other users' messages and conversations survive, including the bot's replies in them."""
    await _seed(store)
    await store.forget_user(1)
    thread = await store.get_conversation("thread:2")
    assert thread is not None
    assert [m.content for m in await store.history(thread.id, limit=10)] == ["hello from two", "reply-in-thread"]


async def test_forget_user_returns_every_message_deleted(store: Store) -> None:
    """The count covers the user's own messages and the replies deleted with their conversations."""
    await _seed(store)
    assert await store.forget_user(1) == 3


async def test_forget_user_removes_the_text_from_the_files(store: Store, db_path: Path) -> None:
    """The forgotten text is no longer in the database file or its write-ahead log."""
    await _seed(store)
    await store.forget_user(1)
    for path in (db_path, db_path.with_name(db_path.name + "-wal")):
        if path.exists():
            assert b"secret-in" not in path.read_bytes(), path


async def test_forget_user_reaches_sources_riddles_quizzes_and_votes(store: Store, db_path: Path) -> None:
    """The skills' tables keep nothing that names the user or holds their text."""
    await store.sources.add(
        scope_id=5, guild_id=9, title="mine", url=None, author_id=1, author_name="one", text="t", passages=["t"]
    )
    await store.riddles.add(author_id=1, question="What has keys?", answer="a piano")
    solved = await store.riddles.add(author_id=2, question="What runs?", answer="a river")
    await store.riddles.solve(solved.id, 1, "one")
    await store.scenes.create(thread_id=77, guild_id=9, creator_id=2, setting="a cafe", cast=[])
    await store.scenes.add_human(77, 1, "one")
    await store.forget_user(1)
    assert query(db_path, "SELECT COUNT(*) FROM scene_humans WHERE user_id = 1") == [(0,)]
    assert query(db_path, "SELECT COUNT(*) FROM sources WHERE author_id = 1") == [(0,)]
    assert query(db_path, "SELECT COUNT(*) FROM source_passages") == [(0,)]
    assert query(db_path, "SELECT COUNT(*) FROM riddles WHERE author_id = 1 OR solved_by = 1") == [(0,)]
    assert query(db_path, "SELECT solved_by_name FROM riddles") == [("someone",)]
    assert query(db_path, "SELECT COUNT(*) FROM quiz_answers WHERE user_id = 1") == [(0,)]
    assert query(db_path, "SELECT COUNT(*) FROM votes WHERE voter_id = 1") == [(0,)]
