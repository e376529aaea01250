"""SQLite storage for conversations and messages (aiosqlite, WAL, foreign keys, versioned migrations).

Open one `Store` in ``main()`` and pass it to whatever needs it::

    async with await Store.open("data/bot.sqlite3") as store:
        conversation = await store.get_or_create_conversation("dm:456", owner_id=456)
        await store.add_message(conversation.id, role=Role.USER, content="Hello", author_id=456)

The schema lives in ``_migrations.py``; to change it, append a migration there.
"""

from ._catchup import RecentConversation
from ._characters import CharacterNameTaken, StoredCharacter
from ._models import Conversation, MessageStatus, Role, StoredMessage
from ._privacy import Purged, UserData
from ._quizzes import Answered, AnswerOutcome, Quiz, QuizAnswer, QuizScore
from ._riddles import StoredRiddle
from ._scenes import SceneHuman, SceneMember, StoredScene
from ._settings import SETTING_NAMES, Scope, StoredSettings
from ._sources import Passage, SourceUsage, StoredSource
from ._store import Store
from ._votes import Comparison, VoteChoice, VoteCount, VoteOutcome

__all__ = [
    "SETTING_NAMES",
    "AnswerOutcome",
    "Answered",
    "CharacterNameTaken",
    "Comparison",
    "Conversation",
    "MessageStatus",
    "Passage",
    "Purged",
    "Quiz",
    "QuizAnswer",
    "QuizScore",
    "RecentConversation",
    "Role",
    "SceneHuman",
    "SceneMember",
    "Scope",
    "SourceUsage",
    "Store",
    "StoredCharacter",
    "StoredMessage",
    "StoredRiddle",
    "StoredScene",
    "StoredSettings",
    "StoredSource",
    "UserData",
    "VoteChoice",
    "VoteCount",
    "VoteOutcome",
]
