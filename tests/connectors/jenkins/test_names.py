"""The names SEI's Jenkins plugin gave jobs, rebuilt from `fullName`: pure, names in and out.

The mangling rule is branch-api's `jenkins.branch.NameMangler` (its javadoc): a name made of
ASCII letters, digits and `-` (not first), at most 32 long and not a Windows reserved name is
kept; any other is rewritten (`/ \\ . _` and space become `-`, other characters `_` + hex, a
`0` in front if the result would start with one of those) and gets a hash of the original
name: the SHA-1 of its UTF-8 bytes, read as a little-endian number, written in base 32
(`0-9a-v`) least significant digit first, 30 digits (the last two bits never show); its last
6 digits after a `.` when the result stays within 25 characters, else 6 to 12 of them as
`.<hash>.` in the middle of a result cut to 32. `_oracle` below computes that hash from the
rule as worded here, independently of the connector's own loop.
"""

from __future__ import annotations

import hashlib

import pytest

from connectors.jenkins.names import (
    FOLDER,
    MAVEN,
    MULTIBRANCH,
    ORGANIZATION,
    PluginNames,
    decode,
    kind_of,
    mangle,
    plugin_names,
)

DIGITS = "0123456789abcdefghijklmnopqrstuv"


def _oracle(name: str) -> str:
    n = int.from_bytes(hashlib.sha1(name.encode("utf-8"), usedforsecurity=False).digest(), "little")
    return "".join(DIGITS[(n >> 5 * i) & 31] for i in range(30))


@pytest.mark.parametrize(
    "name",
    [
        "main",
        "master",
        "PR-123",
        "release-2024-05",
        "Feature-X",
        "cafebabedeadbeefcafebabedeadbeef",  # 32 characters: the longest kept
    ],
)
def test_safe_names_stay_as_they_are(name: str) -> None:
    assert mangle(name) == name


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("feature/x", "feature-x"),  # the `/` that made `feature%2Fx` a job name
        ("release/1.0", "release-1-0"),  # `/` and `.` are separators: `-`
        ("my_repo", "my-repo"),  # `_` too: an org folder's repository directory
        ("fix bug", "fix-bug"),
        ("-hotfix", "-hotfix"),  # a leading dash is not kept: the name is mangled as is
        ("con", "con"),  # reserved on Windows (any case)
        ("LPT1", "LPT1"),
        ("Straße", "Stra_dfe"),  # ß is U+00DF: one byte, `_df`
        ("été", "0_e9t_e9"),  # starts with a character written in hex: a `0` first
        ("/x", "0-x"),  # starts with a separator: `0-`
    ],
)
def test_short_unsafe_names_get_the_short_hash_at_the_end(name: str, prefix: str) -> None:
    assert mangle(name) == f"{prefix}.{_oracle(name)[-6:]}"


def test_the_mangled_names_used_in_the_payload_tests() -> None:
    # Spelled out once, so the exact payloads in test_plugin_naming.py can name them.
    assert mangle("feature/x") == "feature-x.1ttbu8"
    assert mangle("my_repo") == "my-repo.ctrlp4"


def test_a_long_name_is_cut_to_32_around_a_hash_in_the_middle() -> None:
    name = "dependabot/npm_and_yarn/lodash-4.17.21"  # 38 characters, all rewritten as `-`
    # overage 6 → the minimum 6 hash digits as `.xxxxxx.` (8 long), placed at (32 - 8) // 2
    # = 12, replacing 8 + 6 characters of the rewritten name.
    rewritten = "dependabot-npm-and-yarn-lodash-4-17-21"
    expected = rewritten[:12] + f".{_oracle(name)[-6:]}." + rewritten[12 + 14 :]
    assert mangle(name) == expected == "dependabot-n.o92df5.dash-4-17-21"
    assert len(expected) == 32


def test_a_very_long_name_takes_twelve_hash_digits() -> None:
    name = "feature/" + "a" * 40
    # rewritten 48 long: overage 16 > 12, so 12 digits as `.<12>.` (14 long), placed at
    # (32 - 14) // 2 = 9, replacing 14 + 16 characters: 9 + 14 + 9 = 32.
    assert mangle(name) == "feature-a" + f".{_oracle(name)[-12:]}." + "a" * 9


def test_characters_beyond_one_byte_are_written_high_byte_first() -> None:
    # 特 is U+7279, 征 U+5F81, 新 U+65B0; `/` is a separator.
    name = "特征/新"
    assert mangle(name) == f"0_72_79_5f_81-_65_b0.{_oracle(name)[-6:]}"


@pytest.mark.parametrize(
    ("name", "mangled"),
    [
        # branch-api's own expectations (NameManglerTest): the same rule gives the same text.
        ("foo/bar", "foo-bar.nj9av9"),
        ("foo bar", "foo-bar.074vf0"),
        (".", "0-.tkvgu3"),
        ("foo/bar/fu manchu/12345678", "foo-bar-fu-m.vrohpg.chu-12345678"),
        ("cafebabedeadbeefcafebabedeadbeefcafebabedeadbeef", "cafebabed.98h82o58mhfo.edeadbeef"),
        ("我喜欢披萨", "0_62_11_55_9.f9c1g4._62_ab_84_28"),
        ("España", "Espa_f1a.9jabqu"),
        ("Espa\u006e\u0303a", "Espan_03_03a.eqqe01"),  # a combining tilde is its own unit
    ],
)
def test_agrees_with_branch_api(name: str, mangled: str) -> None:
    assert mangle(name) == mangled


def test_an_emoji_is_two_utf16_units_as_in_java() -> None:
    # U+1F680 is the surrogate pair D83D DE80 in Java's strings.
    name = "ship-🚀"
    assert mangle(name) == f"ship-_d8_3d_de_80.{_oracle(name)[-6:]}"


def test_decode_undoes_only_what_branch_api_encodes() -> None:
    assert decode("feature%2Fx") == "feature/x"
    assert decode("a%23b%3Fc%5Bd%5De%5Cf") == "a#b?c[d]e\\f"
    assert decode("100%25") == "100%"
    assert decode("50%20off") == "50%20off"  # %20 is not one of NameEncoder's escapes
    assert decode("%2E") == "." and decode("%2E.") == ".." and decode("%00") == ""
    assert decode("main") == "main"


def test_kind_of_java_classes() -> None:
    assert kind_of("com.cloudbees.hudson.plugins.folder.Folder") == FOLDER
    assert kind_of("org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject") == (
        MULTIBRANCH
    )
    assert kind_of("jenkins.branch.OrganizationFolder") == ORGANIZATION
    assert kind_of("hudson.maven.MavenModuleSet") == MAVEN
    assert kind_of("com.example.SomeOtherFolder") == FOLDER
    assert kind_of("") == FOLDER


def _kinds(table: dict[str, str]):
    return lambda prefix: table.get(prefix, FOLDER)


def test_plugin_names_of_each_layout() -> None:
    kinds = _kinds(
        {
            "A/svc": MULTIBRANCH,
            "acme": ORGANIZATION,
            "acme/my_repo": MULTIBRANCH,
            "libs/core": MAVEN,
            "mb": MULTIBRANCH,
        }
    )
    assert plugin_names("app", kinds) == PluginNames("app", "app", "app", None)
    assert plugin_names("A/B/C/app", kinds) == PluginNames(
        "A/jobs/B/jobs/C/jobs/app", "A/B/C/app", "app", None
    )
    assert plugin_names("A/svc/feature%2Fx", kinds) == PluginNames(
        "A/jobs/svc/branches/feature-x.1ttbu8",
        "A/svc/feature-x.1ttbu8",
        "svc",
        "feature-x.1ttbu8",
    )
    assert plugin_names("mb/main", kinds) == PluginNames(
        "mb/branches/main", "mb/main", "mb", "main"
    )
    assert plugin_names("acme/my_repo/main", kinds) == PluginNames(
        "acme/jobs/my-repo.ctrlp4/branches/main",
        "acme/my-repo.ctrlp4/main",
        "my-repo.ctrlp4",
        "main",
    )
    assert plugin_names("libs/core/com.acme$core-api", kinds) == PluginNames(
        "libs/jobs/core/modules/com.acme$core-api", "libs/core/com.acme$core-api", "core", None
    )
    # Folders keep their names as they are, spaces and all.
    assert plugin_names("Ünïcode team/nightly job", kinds).full_name == (
        "Ünïcode team/jobs/nightly job"
    )


def test_qualified_name_drops_marker_spellings_as_the_plugin_does() -> None:
    """The plugin removes `jobs`, `branches`, `modules` by spelling: a folder named so goes."""
    names = plugin_names("Jobs/deploy", _kinds({}))
    assert (names.full_name, names.qualified_name) == ("Jobs/jobs/deploy", "deploy")
    assert plugin_names("jobs", _kinds({})).qualified_name == "jobs"  # one segment: as is
