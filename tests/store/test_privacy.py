"""`Privacy`: what /forget-me shows and deletes, and the paged read an export uses."""

from pathlib import Path

from bot.store import MessageStatus, Role, SceneMember, Store, UserData

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
