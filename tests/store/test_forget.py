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


def _files_holding(db_path: Path, *words: bytes) -> list[str]:
    """Which of the database file and its write-ahead log hold any of ``words`` in any byte."""
    paths = (db_path, db_path.with_name(db_path.name + "-wal"))
    return [path.name for path in paths if path.exists() and any(word in path.read_bytes() for word in words)]


async def test_forgotten_sources_leave_no_word_in_the_index_or_the_files(store: Store, db_path: Path) -> None:
    """A forgotten source's words are in no byte of the database file or its log, the FTS5 index's blocks included;
    the other sources are still found."""
    for author, text in ((2, "alpha beta gamma"), (1, "the qwertzuiop word"), (2, "delta epsilon")):
        await store.sources.add(
            scope_id=5, guild_id=9, title="t", url=None, author_id=author, author_name="n", text=text, passages=[text]
        )
    assert _files_holding(db_path, b"qwertzuiop") != []  # the scan sees the word where it was put
    await store.forget_user(1)
    assert _files_holding(db_path, b"qwertzuiop") == []
    assert [len(await store.sources.search([5], word)) for word in ("gamma", "epsilon", "qwertzuiop")] == [1, 1, 0]


async def test_scenes_they_started_lose_the_setting_and_rules_they_wrote(store: Store, db_path: Path) -> None:
    """The scene stays for the others in it, with no setting and the card's rules; the words are in no file."""
    await store.scenes.create(
        thread_id=70, guild_id=9, creator_id=1, setting="a cafe in Xanadoria", cast=[], rules=["never say plugh"]
    )
    await store.scenes.add_human(70, 2, "two")
    assert (await store.privacy.summary(1)).scenes_started == 1
    assert (await store.forget_user(1), (await store.privacy.summary(1)).empty) == (0, True)
    scene = await store.scenes.get(70)
    assert scene is not None
    assert (scene.setting, scene.rules, [h.user_id for h in scene.humans]) == ("", None, [2])
    assert _files_holding(db_path, b"Xanadoria", b"plugh") == []
