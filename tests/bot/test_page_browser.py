"""The local page in a real browser (headless Chromium driven by Selenium).

The first tests start what ``make run`` starts (``captionbot run``: the real bot on discord.py, a real worker with
the bundled model, the in-process queue and the stand-in) and use the page as a person would: choose a photo,
run ``/caption`` with its options, and watch the answer appear without reloading. Others run the real bot
against an in-process stand-in: a repost (repost mode) drawn under the member's name and avatar, whose Edit button
changes the image's alt text; any message's avatar, alt text, embed and buttons; a button's modal as a form.

Needs Chromium and its driver (Debian: ``chromium``, ``chromium-driver``; ``.ci/run`` installs them) and
Selenium (the ``dev`` extra); without a browser the tests skip and say so.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from captionbot.bot.standin import StandIn

if TYPE_CHECKING:
    from bot_story import BotUnderTest
    from captionbot.bot.standin.world import Channel, Message, User
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

ANSWER_WITHIN_S = 45  # the bot's answer on the page, once asked (the model takes about a second here)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> tuple[str, str]:
    """Paths of a Chromium and its chromedriver; skips the test, saying what is missing, when there are none."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed: pip install -e '.[dev]'")
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver (.ci/run does) "
                    f"(found browser={browser}, chromedriver={driver})")
    return browser, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900"):
        options.add_argument(arg)
    d = webdriver.Chrome(options=options, service=Service(driver))
    yield d
    d.quit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def page_url(caption_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``captionbot run`` (as ``make run`` starts it, with the bundled model) on a free port; its page's URL."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "CAPTIONBOT_DISCORD_TOKEN",
                                                            "CAPTIONBOT_REDIS_URL")}
    log = tmp_path_factory.mktemp("run") / "run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "captionbot.cli", "run", "--port", str(free_port()),
                                 "--bundle", str(caption_bundle)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (m := re.search(r"open (http://\S+)/ ", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        yield m.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait(browser: WebDriver, what: str, condition: Any, timeout: float = ANSWER_WITHIN_S) -> Any:
    """``condition(browser)`` once it is truthy. An element the page redrew while the condition read it (the page
    replaces a message's element when the message changes) counts as not yet, and is looked up again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(
        condition, f"page: no {what} in {timeout}s")


def open_channel(browser: WebDriver, url: str, name: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url + "/")
    wait(browser, "connected bot", lambda d: d.find_element(By.ID, "status").text == "bot connected", 15)
    browser.find_element(By.XPATH, f"//nav//a[text()='# {name}']").click()


def shown_messages(browser: WebDriver) -> set[str]:
    """Ids of the messages the page shows once its list has settled (the page redraws from its once-a-second poll,
    so an answer to an earlier test may still appear right after a channel is opened)."""
    import time

    from selenium.webdriver.common.by import By

    def ids() -> set[str]:
        return {m.get_attribute("id") or "" for m in browser.find_elements(By.CSS_SELECTOR, ".msg")}

    seen, deadline = ids(), time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(1.5)  # more than one poll of the page
        now = ids()
        if now == seen and now:
            break
        seen = now
    return seen


def loaded(browser: WebDriver, media: WebElement) -> bool:
    """An <img> the browser fetched and decoded, or an <audio> whose metadata it read (a playable file)."""
    return bool(browser.execute_script(
        "const e = arguments[0]; return e.tagName === 'IMG' ? e.complete && e.naturalWidth > 0"
        " : e.readyState >= 1 && e.duration > 0;", media))


def photo(data_dir: Path) -> Path:
    return sorted((data_dir / "flickr8k" / "images").glob("*.jpg"))[0]


def ask_caption(browser: WebDriver, url: str, image: Path, channel: str, *, heatmap: str = "",
                voice: bool = False, variants: int | None = None) -> WebElement:
    """Choose ``image`` on the page, run /caption with those options in ``channel``; the answer's element once it
    shows (the page is never reloaded after the click)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_channel(browser, url, channel)
    before = shown_messages(browser)
    browser.find_element(By.ID, "file").send_keys(str(image))
    Select(browser.find_element(By.ID, "heatmap")).select_by_value(heatmap)
    if voice:
        browser.find_element(By.ID, "voice").click()
    if variants is not None:
        browser.find_element(By.ID, "variants").send_keys(str(variants))
    browser.find_element(By.ID, "caption-button").click()
    return wait(browser, "answer to /caption", lambda d: next(
        (m for m in d.find_elements(By.CSS_SELECTOR, ".msg[data-interaction]")
         if m.get_attribute("id") not in before and "Image description" in m.text), None))


def ask_find(browser: WebDriver, words: str) -> WebElement:
    """Run /find in the shown channel as the chosen member (typing the words and pressing Enter); the private
    answer's element once it shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    before = {m.get_attribute("id") for m in browser.find_elements(By.CSS_SELECTOR, ".msg")}
    browser.find_element(By.ID, "find-words").send_keys(words + Keys.ENTER)
    return wait(browser, "answer to /find", lambda d: next(
        (m for m in d.find_elements(By.CSS_SELECTOR, ".msg[data-interaction]")
         if m.get_attribute("id") not in before and "match" in m.text), None))


def test_caption_with_heatmap_and_voice_from_the_page_shows_the_description_heatmap_and_player(
        browser: WebDriver, page_url: str, data_dir: Path) -> None:
    from selenium.webdriver.common.by import By

    voice = shutil.which("espeak-ng") is not None  # spoken descriptions need it (tests/bot/test_speech.py)
    # automatic alt text is off in #general: only the command answers
    answer = ask_caption(browser, page_url, photo(data_dir), "general", heatmap="on", voice=voice)
    description = re.search(r"Image description: (.+)", answer.text)
    assert description and len(description.group(1).split()) >= 3, answer.text
    assert "APP" in answer.text and "captionbot" in answer.text

    [heatmap] = answer.find_elements(By.CSS_SELECTOR, "figure img")
    wait(browser, "loaded heatmap image", lambda d: loaded(d, heatmap), 10)
    caption = description.group(1).split("\n")[0]
    assert heatmap.get_attribute("alt").startswith("Attention heatmap: "), heatmap.get_attribute("alt")
    assert caption in heatmap.get_attribute("alt")
    assert heatmap.get_attribute("src").endswith("/heatmap.png")
    if voice:
        [audio] = answer.find_elements(By.TAG_NAME, "audio")
        wait(browser, "playable spoken description", lambda d: loaded(d, audio), 10)
        assert audio.get_attribute("aria-label").startswith("Spoken description: ")
    wait(browser, "end of the 'thinking' line", lambda d: d.find_element(By.ID, "pending").text == "", 3)


def test_a_photo_posted_into_alt_text_shows_inline_and_its_description_appears_under_it(
        browser: WebDriver, page_url: str, data_dir: Path) -> None:
    from selenium.webdriver.common.by import By

    open_channel(browser, page_url, "alt-text")  # on, with heatmaps, for the demo
    browser.find_element(By.ID, "file").send_keys(str(photo(data_dir)))
    browser.find_element(By.ID, "post-button").click()

    posted = wait(browser, "posted photo", lambda d: next(
        (m for m in d.find_elements(By.CSS_SELECTOR, ".msg") if m.find_element(By.CLASS_NAME, "who").text == "alice"),
        None), 10)
    [shown] = posted.find_elements(By.CSS_SELECTOR, "figure img")
    wait(browser, "loaded photo", lambda d: loaded(d, shown), 10)
    assert shown.get_attribute("alt") == photo(data_dir).name  # posted without alt text: the file name stands in
    reply = wait(browser, "reply", lambda d: next(
        (m for m in d.find_elements(By.CSS_SELECTOR, ".msg") if "replying to alice" in m.text), None))
    assert "Image description:" in reply.text
    [heatmap] = reply.find_elements(By.CSS_SELECTOR, "figure img")
    wait(browser, "loaded heatmap image", lambda d: loaded(d, heatmap), 10)
    assert heatmap.get_attribute("alt").startswith("Attention heatmap: ")


def test_caption_with_three_variants_from_the_page_shows_more_than_one_numbered_caption(
        browser: WebDriver, page_url: str, data_dir: Path) -> None:
    answer = ask_caption(browser, page_url, photo(data_dir), "general", heatmap="off", variants=3)
    numbered = re.findall(r"^(\d)\. (.+) \((\d+)%\)$", answer.text, re.MULTILINE)
    assert "Image descriptions (" in answer.text and len(numbered) > 1, answer.text
    assert [int(n) for n, _, _ in numbered] == list(range(1, len(numbered) + 1))
    assert len({caption for _, caption, _ in numbered}) == len(numbered), "different captions"


def test_caption_with_variants_out_of_range_is_refused_on_the_page_in_red(
        browser: WebDriver, page_url: str, data_dir: Path) -> None:
    from selenium.webdriver.common.by import By

    open_channel(browser, page_url, "general")
    browser.find_element(By.ID, "file").send_keys(str(photo(data_dir)))
    browser.find_element(By.ID, "variants").send_keys("7")
    browser.find_element(By.ID, "caption-button").click()
    notice = wait(browser, "red sentence", lambda d: d.find_element(By.ID, "notice").text and d.find_element(
        By.ID, "notice"), 10)
    assert notice.text == "variants must be a whole number from 1 to 3."
    assert notice.value_of_css_property("color") == "rgba(250, 119, 124, 1)"  # the page's red
    assert browser.find_element(By.ID, "variants").get_attribute("value") == "7", "kept, to be corrected"
    assert browser.find_element(By.ID, "pending").text == "", "nothing was asked of the bot"


def test_find_on_the_page_answers_privately_with_a_jump_link_that_highlights_the_photo(
        browser: WebDriver, page_url: str, data_dir: Path) -> None:
    """Issue 16: a photo described in #alt-text is found by a word of its description; the answer's jump link
    scrolls to and highlights the photo's message in the shown channel, and is a plain link from elsewhere."""
    from captionbot.bot.find_index import STOPWORDS
    from selenium.webdriver.common.by import By

    open_channel(browser, page_url, "alt-text")
    before = {m.get_attribute("id") for m in browser.find_elements(By.CSS_SELECTOR, ".msg")}
    browser.find_element(By.ID, "file").send_keys(str(photo(data_dir)))
    browser.find_element(By.ID, "post-button").click()
    posted = wait(browser, "posted photo", lambda d: next(
        (m for m in d.find_elements(By.CSS_SELECTOR, ".msg") if m.get_attribute("id") not in before
         and m.find_element(By.CLASS_NAME, "who").text == "alice"), None), 10)
    photo_id = posted.get_attribute("id").removeprefix("m-")
    reply = wait(browser, "description", lambda d: next(
        (m for m in d.find_elements(By.CSS_SELECTOR, ".msg") if m.get_attribute("id") not in before
         and "Image description:" in m.text), None))
    said = re.search(r"Image description: (.+)", reply.text)
    assert said, reply.text
    word = max((w for w in re.findall(r"[a-z]+", said.group(1).lower()) if w not in STOPWORDS), key=len)

    answer = ask_find(browser, word)
    assert "Only you can see this" in answer.text and f"Images matching **{word}**" in answer.text
    link = answer.find_element(By.CSS_SELECTOR, f"a.jump[data-jump='{photo_id}']")
    channel_id = browser.execute_script("return channel;")
    url = link.text
    assert re.fullmatch(rf"https://discord\.com/channels/\d+/{channel_id}/{photo_id}", url), url
    assert link.get_attribute("href").endswith(f"#m-{photo_id}")
    browser.execute_script("document.getElementById('log').scrollTop = 1e9;")  # the answer at the bottom
    link.click()
    target = wait(browser, "highlighted photo", lambda d: d.find_element(By.ID, f"m-{photo_id}").get_attribute(
        "class").split().count("highlight") and d.find_element(By.ID, f"m-{photo_id}"), 3)
    assert browser.execute_script(
        "const r = arguments[0].getBoundingClientRect(), l = document.getElementById('log').getBoundingClientRect();"
        " return r.top >= l.top - 1 && r.top < l.bottom;", target), "scrolled into view"
    assert browser.find_element(By.ID, "notice").text == ""

    open_channel(browser, page_url, "general")  # from another channel the same link stays a link to Discord
    elsewhere = ask_find(browser, word)
    assert not elsewhere.find_elements(By.CSS_SELECTOR, f"a.jump[data-jump='{photo_id}']")
    [plain] = [a for a in elsewhere.find_elements(By.TAG_NAME, "a") if a.text == url]
    assert plain.get_attribute("href") == url


@pytest.mark.skipif(not all(hasattr(StandIn, m) for m in ("press_button", "submit_modal")),
                    reason="StandIn.press_button / submit_modal come with the feedback buttons (branch feedback)")
def test_edit_button_opens_a_modal_on_the_page_and_the_correction_replaces_the_description(
        browser: WebDriver, page_url: str, data_dir: Path) -> None:
    """Issue 15 items 7 and 10: the Edit button under a description opens its modal on the page; what the person
    writes there becomes the description."""
    from selenium.webdriver.common.by import By

    answer = ask_caption(browser, page_url, photo(data_dir), "general", heatmap="off")
    answer_id = answer.get_attribute("id")
    [edit] = [b for b in answer.find_elements(By.CSS_SELECTOR, ".row button") if "Edit" in b.text]
    edit.click()
    dialog = wait(browser, "modal", lambda d: d.find_element(By.ID, "modal") if d.find_element(
        By.ID, "modal").get_attribute("open") is not None else None, 30)
    field = dialog.find_element(By.CSS_SELECTOR, "#modal-fields textarea, #modal-fields input")
    field.clear()
    field.send_keys("A brown dog runs on the grass.")
    dialog.find_element(By.ID, "modal-submit").click()
    wait(browser, "corrected description", lambda d: "A brown dog runs on the grass." in d.find_element(
        By.ID, answer_id).text, 30)


async def test_any_message_is_drawn_with_its_author_avatar_alt_text_embeds_and_buttons(
        browser: WebDriver, standin: StandIn, data_dir: Path) -> None:
    """A repost through a webhook (another author's name and avatar, the description as the image's alt text),
    an embed and buttons, as the bot will send them: the page draws whatever a message carries."""
    from captionbot.bot.standin.world import Attachment, Message, User, snowflake
    from selenium.webdriver.common.by import By

    world, data = standin.world, photo(data_dir).read_bytes()
    channel = world.channel("gallery")
    avatar = standin.rest.new_attachment(channel.id, "avatar.jpg", data, "image/jpeg")
    image = standin.rest.new_attachment(channel.id, "dog.jpg", data, None)
    image.description = "A dog runs across the grass."
    reposter = User(snowflake(), "bob", bot=True, avatar_url=avatar.url)
    embed = {"title": "Corrected description", "description": "Thanks, bob.", "color": 0x5865F2}
    buttons = [{"type": 1, "components": [
        {"type": 2, "style": 2, "label": "Edit", "custom_id": "captionbot:edit"},
        {"type": 2, "style": 3, "label": "Good", "emoji": {"name": "👍"}, "custom_id": "captionbot:up"},
        {"type": 2, "style": 5, "label": "Help", "url": "https://example.invalid/help"}]}]
    mid = snowflake()
    world.messages[mid] = Message(mid, channel.id, world.guild_id, reposter, attachments=[image], embeds=[embed],
                                  components=buttons)
    assert isinstance(image, Attachment) and image.content_type == "image/jpeg"  # from the name, as Discord does

    def look() -> None:
        browser.get(standin.base_url + "/")
        wait(browser, "channels", lambda d: d.find_elements(By.XPATH, "//nav//a[text()='# gallery']"), 10)[0].click()
        msg = wait(browser, "reposted image", lambda d: d.find_elements(By.ID, f"m-{mid}"), 10)[0]
        assert msg.find_element(By.CLASS_NAME, "who").text == "bob"
        [face, shown] = msg.find_elements(By.TAG_NAME, "img")[:2]
        assert face.get_attribute("src") == avatar.url
        assert shown.get_attribute("alt") == "A dog runs across the grass."
        assert msg.find_element(By.CLASS_NAME, "alt").text == "ALT"
        wait(browser, "loaded avatar and image", lambda d: loaded(d, face) and loaded(d, shown), 10)
        assert "Corrected description" in msg.find_element(By.CLASS_NAME, "embed").text
        labels = [b.text for b in msg.find_elements(By.CSS_SELECTOR, ".row button")]
        assert labels == ["Edit", "👍 Good"]
        assert all(b.is_enabled() for b in msg.find_elements(By.CSS_SELECTOR, ".row button"))
        link = msg.find_element(By.CSS_SELECTOR, ".row a.button")
        assert link.text == "Help" and link.get_attribute("href") == "https://example.invalid/help"

    await asyncio.to_thread(look)  # Selenium blocks; the stand-in answers the browser on this event loop


async def test_a_repost_shows_under_the_members_name_and_avatar_and_its_edit_button_changes_the_alt_text(
        browser: WebDriver, standin: StandIn, bot: BotUnderTest, data_dir: Path) -> None:
    """Issue 15, items 6, 7 and 10 with the real bot: alice posts a photo on the page into a repost-mode channel;
    the repost is drawn under her name and the avatar it was posted with, the description as the image's alt text,
    with the Edit button; alice's Edit opens the box prefilled with that alt text and her words replace it."""
    from bot_story import turn_on
    from captionbot.bot.standin.world import MANAGE_MESSAGES, MANAGE_WEBHOOKS
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    await standin.set_bot_permissions("alt-text", allow=MANAGE_WEBHOOKS | MANAGE_MESSAGES)
    await turn_on(standin, "alt-text", mode="repost")
    fixed = "A dog with a stick runs across the lawn."

    def reposted_as(d: WebDriver) -> tuple[str, str, str] | None:
        """The repost as drawn (its id, the avatar's and the image's src and alt), once it shows with buttons."""
        repost = next((m for m in d.find_elements(By.CSS_SELECTOR, ".msg") if m.find_elements(By.CSS_SELECTOR, ".row")
                       and m.find_element(By.CLASS_NAME, "who").text == "alice"), None)
        if repost is None:
            return None
        assert "APP" in repost.text
        face = repost.find_element(By.CSS_SELECTOR, "img.avatar")
        [shown] = repost.find_elements(By.CSS_SELECTOR, "figure img")
        return repost.get_attribute("id").removeprefix("m-"), face.get_attribute("src"), shown.get_attribute("alt")

    def post() -> tuple[str, str, str]:
        browser.get(standin.base_url + "/")
        wait(browser, "channels", lambda d: d.find_elements(By.XPATH, "//nav//a[text()='# alt-text']"), 10)[0].click()
        Select(browser.find_element(By.ID, "user")).select_by_value("alice")
        browser.find_element(By.ID, "file").send_keys(str(photo(data_dir)))
        browser.find_element(By.ID, "post-button").click()
        drawn: tuple[str, str, str] = wait(browser, "repost with buttons", reposted_as)
        return drawn

    mid, face, alt = await asyncio.to_thread(post)
    [repost] = standin.webhook_posts_in("alt-text")
    assert mid == repost.id and face == repost.avatar_url, "her avatar, as the repost was posted with it"
    assert alt == repost.attachments[0].description and alt != photo(data_dir).name, "the description is its alt"

    def edit() -> None:
        labels = [b.text for b in browser.find_elements(By.CSS_SELECTOR, f"#m-{mid} .row button")]
        assert labels == ["✏️ Edit", "👍", "👎"], labels
        browser.find_element(By.CSS_SELECTOR, f"#m-{mid} .row button").click()
        dialog = wait(browser, "modal", lambda d: d.find_element(By.ID, "modal") if d.find_element(
            By.ID, "modal").get_attribute("open") is not None else None, 30)
        field = dialog.find_element(By.CSS_SELECTOR, "#modal-fields textarea, #modal-fields input")
        assert field.get_attribute("value") == alt, "prefilled with the image's alt text"
        field.clear()
        field.send_keys(fixed)
        dialog.find_element(By.ID, "modal-submit").click()
        wait(browser, "changed alt text", lambda d: d.find_element(
            By.CSS_SELECTOR, f"#m-{mid} figure img").get_attribute("alt") == fixed, 30)

    await asyncio.to_thread(edit)
    assert standin.world.messages[mid].attachments[0].description == fixed


class ModalBot(StandIn):
    """A stand-in whose "bot" answers every button with a modal and keeps what is submitted: it stands for the
    bot's side only, so that the page's buttons and modal form are tested before the feedback buttons exist."""

    def __init__(self) -> None:
        super().__init__()
        self.pressed: list[tuple[str, str, str, str]] = []
        self.submitted: list[tuple[str, str, str, dict[str, str]]] = []

    async def press_button(self, channel: Channel, user: User, message: Message, custom_id: str) -> object:
        from captionbot.bot.standin.record import Sent

        self.pressed.append((channel.name, user.name, message.id, custom_id))
        modal = {"custom_id": f"fix:{message.id}", "title": "Edit the description", "components": [
            {"type": 1, "components": [{"type": 4, "custom_id": "text", "label": "Description", "style": 2,
                                        "value": message.content, "max_length": 1024}]}]}
        await self._record(Sent("interaction_other", "POST callback", 200, {"type": 9, "data": modal},
                                channel_id=channel.id, interaction_id="1"))
        return SimpleNamespace(id="1")

    async def submit_modal(self, channel: Channel, user: User, custom_id: str, values: dict[str, str]) -> object:
        self.submitted.append((channel.name, user.name, custom_id, values))
        return SimpleNamespace(id="2")


async def test_a_button_click_shows_the_modal_the_bot_answers_with_and_submits_what_the_person_wrote(
        browser: WebDriver) -> None:
    from captionbot.bot.standin.world import Message, snowflake
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    standin = ModalBot()
    await standin.start()
    world = standin.world
    channel = world.channel("alt-text")
    mid = snowflake()
    world.messages[mid] = Message(mid, channel.id, world.guild_id, world.bot_user, content="A dog runs.",
                                  components=[{"type": 1, "components": [
                                      {"type": 2, "style": 2, "label": "Edit", "custom_id": f"edit:{mid}"}]}])

    def use() -> None:
        browser.get(standin.base_url + "/")
        wait(browser, "Edit button", lambda d: d.find_elements(By.CSS_SELECTOR, f"#m-{mid} .row button"), 10)
        Select(browser.find_element(By.ID, "user")).select_by_value("bob")
        browser.find_element(By.CSS_SELECTOR, f"#m-{mid} .row button").click()
        dialog = wait(browser, "open modal", lambda d: d.find_element(By.ID, "modal").get_attribute("open")
                      is not None and d.find_element(By.ID, "modal"), 10)
        assert dialog.find_element(By.ID, "modal-title").text == "Edit the description"
        assert dialog.find_element(By.TAG_NAME, "label").text.lower() == "description"
        field = dialog.find_element(By.CSS_SELECTOR, "textarea[name=text]")
        assert field.get_attribute("value") == "A dog runs."
        field.clear()
        field.send_keys("A brown dog runs on the grass.")
        dialog.find_element(By.ID, "modal-submit").click()
        wait(browser, "closed modal", lambda d: d.find_element(By.ID, "modal").get_attribute("open") is None, 10)

    try:
        await asyncio.to_thread(use)
    finally:
        await standin.stop()
    assert standin.pressed == [("alt-text", "bob", mid, f"edit:{mid}")]
    assert standin.submitted == [("alt-text", "bob", f"fix:{mid}", {"text": "A brown dog runs on the grass."})]
