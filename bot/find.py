"""``/find words…``: images of this server found by what the bot said about them; ``/findindex on|off|status``.

Every description the bot posts in a server (automatic alt text, ``/caption``, **Describe image**, mentions: the
caption, the text read in the image, and the object labels behind it) is indexed (``bot/find_index.py``). ``/find``
answers privately with the best matches as jump links, only from channels the asker can see (View Channel and
Read Message History there). Deleting a described message removes it from the index. A server can turn indexing
off, which also wipes what was indexed (Manage Server).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import discord
from captionbot.bot import services as services_mod
from captionbot.bot.find_index import FindIndex, Found
from captionbot.bot.replies import DISCORD_MESSAGE_LIMIT, NO_MENTIONS, Outcome, answer_privately, defer
from captionbot.bot.services import Services
from discord import app_commands
from discord.ext import commands

from captionbot.formats import MAX_FIND_QUERY_CHARS

log = logging.getLogger(__name__)
RESULTS = 5
SHOWN_CHARS = 160  # each hit's description is cut to this in the answer
LABEL_MIN_PROB = 0.3  # object labels at least this likely are searchable too (not shown)
MAX_QUERY_CHARS = MAX_FIND_QUERY_CHARS


def visible_channels(guild: discord.Guild, member: discord.Member) -> list[int]:
    """Ids of the text channels and threads where ``member`` can see and read past messages."""
    found = []
    for channel in [*guild.channels, *guild.threads]:
        if not isinstance(channel, discord.TextChannel | discord.Thread | discord.VoiceChannel | discord.StageChannel):
            continue
        perms = channel.permissions_for(member)
        if perms.view_channel and perms.read_message_history:
            found.append(channel.id)
    return found


def searchable_labels(outcomes: Sequence[Outcome]) -> str:
    """The object labels behind the described images, as words to search by (not shown)."""
    return " ".join(word for o in outcomes if o.ok and o.result for word, p in o.result.labels if p >= LABEL_MIN_PROB)


def answer_text(query: str, hits: Sequence[Found], guild_id: int) -> str:
    if not hits:
        return (f"No image described here matches **{discord.utils.escape_markdown(query)}** in the channels you can "
                f"see.")
    lines = [f"Images matching **{discord.utils.escape_markdown(query)}**, best first:"]
    for n, hit in enumerate(hits, 1):
        said = " ".join(hit.text.removeprefix("Image description: ").removeprefix("Image descriptions:").split())
        if len(said) > SHOWN_CHARS:
            said = said[: SHOWN_CHARS - 1].rsplit(" ", 1)[0] + "…"
        lines.append(f"{n}. {hit.jump_url(guild_id)} — {discord.utils.escape_markdown(said)}")
    return "\n".join(lines)[:DISCORD_MESSAGE_LIMIT]


async def index_description(index: FindIndex, guild_id: int | None, channel_id: int, message_id: int,
                            content: str, outcomes: Sequence[Outcome]) -> None:
    """Index what the bot just posted about the images of a message; never raises (a log line instead)."""
    if guild_id is None or not any(o.ok for o in outcomes):
        return
    try:
        await index.add(guild_id, channel_id, message_id, content, searchable_labels(outcomes))
    except Exception:
        log.exception("could not index the description of message %s", message_id)


class Find(commands.Cog):
    def __init__(self, bot: commands.Bot, services: Services) -> None:
        self.bot = bot
        self.s = services
        self.index = FindIndex(services.redis, services.keys)

    @app_commands.command(name="find", description="Find images in this server by what they show")
    @app_commands.describe(words="What to look for, e.g. dog beach")
    @app_commands.guild_only()
    async def find(self, interaction: discord.Interaction, words: app_commands.Range[str, 1, MAX_QUERY_CHARS]) -> None:
        if not await defer(interaction, ephemeral=True):
            return
        guild = interaction.guild
        assert guild is not None and interaction.guild_id is not None  # guild_only
        if not await self.index.enabled(guild.id):
            await interaction.followup.send("Finding images is turned off in this server (`/findindex on` turns it "
                                            "on again, with Manage Server).", ephemeral=True,
                                            allowed_mentions=NO_MENTIONS)
            return
        member = interaction.user if isinstance(interaction.user, discord.Member) else guild.get_member(
            interaction.user.id)
        channels = visible_channels(guild, member) if member is not None else []
        hits = await self.index.search(guild.id, words[:MAX_QUERY_CHARS], channels, limit=RESULTS)
        log.info("/find in guild %s by user %s: %d hit(s)", guild.id, interaction.user.id, len(hits))
        await interaction.followup.send(answer_text(words, hits, guild.id), ephemeral=True,
                                        allowed_mentions=NO_MENTIONS)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        if payload.guild_id is not None and await self.index.remove(payload.guild_id, payload.channel_id,
                                                                    payload.message_id):
            log.info("message %s deleted: its description left the find index", payload.message_id)

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        if payload.guild_id is not None:
            for message_id in payload.message_ids:
                await self.index.remove(payload.guild_id, payload.channel_id, message_id)

    async def cog_app_command_error(self, interaction: discord.Interaction,
                                    error: app_commands.AppCommandError) -> None:
        log.error("/find failed", exc_info=error)
        await answer_privately(interaction, "Sorry, something went wrong searching.")


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class FindIndexAdmin(commands.GroupCog, group_name="findindex",
                     group_description="Whether /find indexes what the bot says about images here"):
    def __init__(self, bot: commands.Bot, services: Services) -> None:
        self.bot = bot
        self.index = FindIndex(services.redis, services.keys)
        super().__init__()

    @app_commands.command(name="on", description="Index the descriptions the bot posts here, for /find")
    async def turn_on(self, interaction: discord.Interaction) -> None:
        if await self._allowed(interaction):
            assert interaction.guild_id is not None
            await self.index.turn_on(interaction.guild_id)
            log.info("find index on in guild %s by user %s", interaction.guild_id, interaction.user.id)
            await interaction.followup.send("Done. Descriptions the bot posts from now on can be found with `/find`.",
                                            ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="off", description="Stop indexing descriptions here and delete the index")
    async def turn_off(self, interaction: discord.Interaction) -> None:
        if await self._allowed(interaction):
            assert interaction.guild_id is not None
            dropped = await self.index.turn_off_and_wipe(interaction.guild_id)
            log.info("find index off and wiped in guild %s by user %s", interaction.guild_id, interaction.user.id)
            await interaction.followup.send(f"Done. `/find` is off here and the index is deleted ({dropped} "
                                            f"description(s)).", ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="status", description="Is /find indexing here, and how much?")
    async def status(self, interaction: discord.Interaction) -> None:
        if not await defer(interaction, ephemeral=True):
            return
        assert interaction.guild_id is not None
        on = await self.index.enabled(interaction.guild_id)
        size = await self.index.size(interaction.guild_id)
        await interaction.followup.send(f"Indexing for `/find` is **{'on' if on else 'off'}** here: {size} "
                                        f"described message(s) indexed.", ephemeral=True, allowed_mentions=NO_MENTIONS)

    async def _allowed(self, interaction: discord.Interaction) -> bool:
        if not interaction.permissions.manage_guild:
            log.info("find index change refused for user %s in guild %s", interaction.user.id, interaction.guild_id)
            await answer_privately(interaction, "Sorry, turning `/find` indexing on or off needs the **Manage Server** "
                                                "permission.")
            return False
        return await defer(interaction, ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    services = await services_mod.acquire(bot, __name__)
    await bot.add_cog(Find(bot, services))
    await bot.add_cog(FindIndexAdmin(bot, services))


async def teardown(bot: commands.Bot) -> None:
    await services_mod.release(bot, __name__)
