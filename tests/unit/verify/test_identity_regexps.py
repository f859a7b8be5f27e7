"""Identity regexps as cosign and policy-controller read them: Go's regexp syntax on RE2.

Search (policy.sigstore.dev, the cosign flags) or full match (policy.signet.dev); ASCII ``\\d \\w
\\s \\b``; Go's syntax accepted and what Go refuses refused; linear time on hostile patterns; and
certificates (made by the test Sigstore kit) whose SANs are not plain ASCII e-mail addresses.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.sigstore_kit import default_kit
from tests.sigstore_kit.ca import SanKind, fulcio_extension_value, fulcio_oid, subject_alternative_name
from tests.sigstore_kit.keys import new_p256
from webhook.cli import main
from webhook.errors import IdentityMismatchError, PolicyError
from webhook.verify.identity import Identity
from webhook.verify.regexp import MAX_LENGTH, MAX_NESTING, RegexpMode, compile_regexp

ISSUER = "https://oidc.example"
PATHOLOGICAL = r"^([a-z.@]+)+!$"

# (pattern, value, matches as a search, matches in full)
SEMANTICS = [
    # Search finds a match anywhere; full match needs the whole value.
    (r"kubernetes\.default", "https://kubernetes.default.svc", True, False),
    (r"^https://github\.com/acme/", "https://github.com/acme/app/.github/workflows/r.yml@refs/heads/main", True, False),
    (r"@securesystems\.de", "philipp.belitz@securesystems.de", True, False),
    (r".*@securesystems\.de", "philipp.belitz@securesystems.de", True, True),
    (r"^https://github\.com/acme/", "https://github.com/evil/acme/", False, False),
    # $ is the end of the text (Python's $ also matches before a final newline; Go's does not).
    (r"^alice@example\.com$", "alice@example.com\n", False, False),
    (r"alice@example\.com", "alice@example.com\n", True, False),
    (r"(?m)^alice@example\.com$", "alice@example.com\n", True, False),
    (r"abc\z", "abc", True, True),
    (r"abc\z", "abc\n", False, False),
    (r"\Aabc", "xabc", False, False),
    # Perl classes, POSIX classes and \b are ASCII-only, as in Go.
    (r"\d", "\u0663", False, False),  # ARABIC-INDIC DIGIT THREE
    (r"\p{Nd}", "\u0663", True, True),
    (r"^\w+$", "jürgen", False, False),
    (r"^\p{L}+$", "jürgen", True, True),
    (r"[[:alnum:]]", "é", False, False),
    (r"[[:^alnum:]]", "é", True, True),
    (r"\s", "\u00a0", False, False),
    (r"\s", "\v", False, False),  # Go's \s is [\t\n\f\r ]: no vertical tab
    (r"\s", "\f", True, True),
    (r"\bfoo\b", "éfooé", True, False),  # é is not an ASCII word character
    (r"foo\b", "fooé", True, False),
    (r"\Bfoo", "éfoo", False, False),
    (r"\p{Greek}+", "αβγ", True, True),
    (r"\PL", "é", False, False),
    (r"\p{^Greek}", "a", True, True),
    # Case folding is Unicode simple folding, as in Go.
    (r"(?i)k", "\u212a", True, True),  # KELVIN SIGN
    (r"(?i)ſ", "S", True, True),
    # . does not match a newline unless (?s); negated classes do.
    (r".", "\n", False, False),
    (r"(?s).", "\n", True, True),
    (r"[^a]", "\n", True, True),
    (r"\D", "\n", True, True),
    # Other Go syntax.
    (r"\Qa.b\E", "a.b", True, True),
    (r"\Qa.b\E", "axb", False, False),
    (r"(?P<repo>[^/]+)/(?<wf>[^@]+)@refs/heads/main", "acme/release.yml@refs/heads/main", True, True),
    (r"x{01}", "x{01}", True, True),  # a leading zero makes the braces literal text
    (r"x{,3}", "x{,3}", True, True),
    (r"\x{1F600}", "\U0001f600", True, True),
    (r"\101", "A", True, True),
    (r"(?U)a+", "aaa", True, True),  # non-greedy changes what is matched, never whether
    (r"^$", "", True, True),
]


@pytest.mark.parametrize(("pattern", "value", "search", "full"), SEMANTICS,
                         ids=[f"{p}~{v!r}" for p, v, _, _ in SEMANTICS])
def test_search_and_full_match_semantics(pattern: str, value: str, search: bool, full: bool) -> None:
    assert compile_regexp(pattern, "search").matches(value) is search
    assert compile_regexp(pattern, "full").matches(value) is full


@pytest.mark.parametrize("pattern", [
    r"\z", r"\A", r"\pL", r"\p{Greek}", r"\P{Greek}", r"\p{^Greek}", r"\pN", r"[\p{Han}\d]",
    r"[[:word:]]", r"[[:^space:]]", r"[]a]", r"[^]a]", r"[a-b-c]", r"\Q*+?{[\E", r"\Q\\E", r"\\C", r"\Q\C\E",
    r"(?i)abc", r"(?i-i)abc", r"(?sm-U:.)", r"(?)", r"(?P<name>a)", r"(?<name>a)", r"(?P<a_1>a)(?P<a_1>b)",
    r"\x41\x{10FFFF}\0\123", r"\_\-\.\/", r"a{2}b{2,}c{2,3}d{0}", r"(?:a{10}){100}",
    "(" * MAX_NESTING + ")" * MAX_NESTING, r"[(]" * 300, r"\(" * 300, r"^*", r"\b*",
])
def test_go_syntax_is_accepted(pattern: str) -> None:
    compile_regexp(pattern, "search")
    compile_regexp(pattern, "full")


@pytest.mark.parametrize(("pattern", "words"), [
    # Python and PCRE habits, with the reason
    (r"(?=a)b", "lookahead and lookbehind are not supported"),
    (r"(?<!a)b", "lookahead and lookbehind are not supported"),
    (r"(a)\1", "backreferences are not supported"),
    (r"(?P<n>a)(?P=n)", "invalid perl operator: (?P"),
    (r"\k<n>", "backreferences are not supported"),
    (r"abc\Z", r"\z is the end of the text"),
    (r"a++", "cannot be stacked"),
    (r"a*+", "cannot be stacked"),
    (r"(?>a)", "no lookaround, atomic groups"),
    (r"(?x)a b", "x flag"),
    (r"(?#note)a", "comments"),
    (r"\N{DIGIT ONE}", r"invalid escape sequence: \N"),
    (r"\u0041", r"invalid escape sequence: \u"),
    (r"\p{Letter}", "unknown Unicode class"),
    (r"\p{greek}", "unknown Unicode class"),
    # what RE2 C++ accepts and Go refuses
    (r"a\Cb", r"\C (any byte) is not supported by Go"),
    (r"(?P<né>a)", "group name né is not supported"),
    (r"(?<ñ>a)", "group name ñ is not supported"),
    (r"x{9876543210}", "repetition count {9876543210} is too large"),
    (r"x{1,99999999999}", "too large"),
    ("(" * (MAX_NESTING + 1) + ")" * (MAX_NESTING + 1), "groups nest more than"),
    # Go's own limits (RE2 shares them)
    (r"x{1001}", "invalid repetition size"),
    (r"((((x{10}){10}){10}){2})", "invalid repetition size"),
    (r"[z-a]", "invalid character class range"),
    (r"(a", "missing )"),
    (r"a)", "unexpected )"),
    (r"(?P<x y>a)", "invalid named capture group"),
    (r"(?P<>a)", "invalid named capture group"),
    (r"\Q\E*", "no argument for repetition operator"),
    (r"\c", "invalid escape sequence"),
    (r"(?z)", "invalid perl operator"),
    ("a\\", "trailing"),
    ("\ud800", "not valid Unicode"),
    # memory and length bounds
    (r"\p{L}{1000}", "too large (its compiled form would exceed 1 MiB)"),
    (r"(xx?)" * 1000, "longer than 4096 characters"),
])
def test_what_go_or_re2_refuses_is_refused_with_the_reason(pattern: str, words: str) -> None:
    with pytest.raises(PolicyError) as info:
        compile_regexp(pattern, "search")
    assert words in info.value.reason
    assert info.value.reason.startswith("invalid regular expression ")
    if len(pattern) < 200 and pattern.isprintable():
        assert f"invalid regular expression {pattern}:" in info.value.reason  # as written, no repr


def test_long_patterns_are_cut_in_messages() -> None:
    with pytest.raises(PolicyError) as info:
        compile_regexp("a" * (MAX_LENGTH + 1), "search")
    assert len(info.value.reason) < 400 and "…" in info.value.reason


@pytest.mark.parametrize("mode", ["search", "full"])
def test_the_pathological_pattern_answers_at_once(mode: RegexpMode) -> None:
    # Python's re backtracks for minutes here (exponential in the local part); RE2 is linear.
    regexp = compile_regexp(PATHOLOGICAL, mode)
    for san in ("philipp.belitz@securesystems.de", "a" * 40 + "@example.com", "x.y" * 20_000 + "@z.de"):
        assert not regexp.matches(san)
    assert regexp.matches("abc@example.com!")


def test_descriptions_show_the_pattern_as_written_and_the_mode() -> None:
    assert compile_regexp(r"^https://github\.com/acme/", "search").describe() == r"^https://github\.com/acme/ (search)"
    assert compile_regexp(r"\d+", "full").describe() == r"\d+ (full match)"
    assert compile_regexp("a\nb", "full").describe() == r"a\nb (full match)"  # a newline stays readable


# ---- certificates with unusual SANs -------------------------------------------------------------


def _leaf(identity: str, issuer: str = ISSUER, kind: SanKind = "auto") -> x509.Certificate:
    return default_kit().issue_leaf(identity, issuer, san_kind=kind).certificate


def _several_sans(*names: x509.GeneralName, issuer: str = ISSUER) -> x509.Certificate:
    """A leaf from the kit's Fulcio CA with several SANs (Fulcio itself issues one)."""
    ca = default_kit().ca
    key = new_p256()
    start = datetime.now(UTC) - timedelta(minutes=1)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([])).issuer_name(ca.intermediate.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + timedelta(minutes=10))
        .add_extension(x509.SubjectAlternativeName(list(names)), critical=True)
        .add_extension(x509.UnrecognizedExtension(fulcio_oid(8), fulcio_extension_value(8, issuer)), critical=False)
        .sign(ca.intermediate_key, hashes.SHA384())
    )


def test_search_and_full_match_on_a_workflow_uri() -> None:
    leaf = _leaf("https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main")
    Identity(subject_regexp=r"^https://github\.com/acme/", issuer_regexp=r"oidc\.example",
             regexp_mode="search").verify(leaf)
    with pytest.raises(IdentityMismatchError) as info:
        Identity(subject_regexp=r"^https://github\.com/acme/", issuer=ISSUER).verify(leaf)
    assert info.value.expected == rf"subject matching regexp ^https://github\.com/acme/ (full match), issuer {ISSUER}"


def test_a_san_with_a_trailing_newline_does_not_pass_for_the_plain_name() -> None:
    leaf = _leaf("alice@example.com\n", kind="email")
    for anchored in (Identity(subject_regexp=r"^alice@example\.com$", issuer=ISSUER, regexp_mode="search"),
                     Identity(subject_regexp=r"alice@example\.com", issuer=ISSUER),
                     Identity(subject="alice@example.com", issuer=ISSUER)):
        with pytest.raises(IdentityMismatchError) as info:
            anchored.verify(leaf)
        assert info.value.found == rf"alice@example.com\n / issuer {ISSUER}"  # the newline is shown, escaped
    # unanchored, as cosign reads it: found inside the value
    Identity(subject_regexp=r"alice@example\.com", issuer=ISSUER, regexp_mode="search").verify(leaf)


def test_non_ascii_subject_and_issuer_follow_go_classes() -> None:
    leaf = _leaf("jürgen\u0663!oidc.example", issuer="https://oidc.example/tenant-ü", kind="othername")
    passes = [
        Identity(subject_regexp=r"^j\p{L}+\p{Nd}!", issuer_regexp=r"tenant-\p{L}$", regexp_mode="search"),
        Identity(subject_regexp=r"[\p{L}]+\p{Nd}!oidc\.example", issuer_regexp=r"https://oidc\.example/.*"),
    ]
    for policy in passes:
        policy.verify(leaf)
    fails = [
        Identity(subject_regexp=r"^j\w+", issuer_regexp=r"tenant-\w$", regexp_mode="search"),  # ü is not \w
        Identity(subject_regexp=r"\d!", issuer="https://oidc.example/tenant-ü", regexp_mode="search"),  # not \d
        Identity(subject_regexp=r"\w+\p{Nd}!oidc\.example", issuer_regexp=".*"),
    ]
    for policy in fails:
        with pytest.raises(IdentityMismatchError):
            policy.verify(leaf)


def test_a_very_long_san_is_matched_and_shown_cut() -> None:
    long_uri = "https://ci.example/" + "a" * 8000
    leaf = _leaf(long_uri)
    Identity(subject=long_uri, issuer=ISSUER).verify(leaf)
    Identity(subject_regexp=r"^https://ci\.example/a+$", issuer=ISSUER, regexp_mode="search").verify(leaf)
    with pytest.raises(IdentityMismatchError) as info:
        Identity(subject_regexp=PATHOLOGICAL, issuer=ISSUER, regexp_mode="search").verify(leaf)
    assert "…" in info.value.found and len(str(info.value)) < 1000


def test_every_fulcio_san_type_of_a_certificate_is_an_identity() -> None:
    leaf = _several_sans(
        x509.DNSName("build.example"),
        x509.RFC822Name("alice@example.com"),
        x509.UniformResourceIdentifier("https://ci.example/job"),
        subject_alternative_name("bob!oidc.example", "othername"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
    )
    for pattern in (r"^alice@", r"/job$", r"^bob!oidc"):
        Identity(subject_regexp=pattern, issuer=ISSUER, regexp_mode="search").verify(leaf)
    # DNS names and IP addresses are not signer identities: Fulcio never issues them.
    for pattern in (r"build\.example", r"192\.0\.2\.1"):
        with pytest.raises(IdentityMismatchError) as info:
            Identity(subject_regexp=pattern, issuer=ISSUER, regexp_mode="search").verify(leaf)
        assert info.value.found == f"alice@example.com https://ci.example/job bob!oidc.example / issuer {ISSUER}"


@pytest.mark.parametrize("kwargs", [
    {"subject_regexp": "", "issuer": ISSUER},
    {"subject": "", "issuer": ISSUER},
    {"subject": "a", "issuer_regexp": ""},
])
def test_empty_values_are_refused_not_read_as_anything(kwargs: dict[str, str]) -> None:
    # cosign reads an empty flag as "no constraint"; an empty search would match every signer.
    with pytest.raises(PolicyError, match="must not be empty"):
        Identity(**kwargs, regexp_mode="search")


def test_identity_names_the_field_of_a_refused_regexp() -> None:
    with pytest.raises(PolicyError) as info:
        Identity(subject_regexp=r"(?=x)", issuer=ISSUER)
    assert info.value.reason.startswith("subjectRegExp: invalid regular expression (?=x): ")


# ---- cosign-compatible flags search ---------------------------------------------------------------


@pytest.fixture(scope="module")
def signed_by_philipp(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    kit = default_kit()
    directory = tmp_path_factory.mktemp("regexp-flags")
    artifact, bundle, root = directory / "artifact", directory / "artifact.sigstore.json", directory / "root.json"
    artifact.write_bytes(b"signed by philipp\n")
    bundle.write_bytes(kit.sign_blob(artifact.read_bytes(), identity="philipp.belitz@securesystems.de").to_json())
    root.write_bytes(kit.trusted_root_json())
    return ["verify-blob", str(artifact), "--bundle", str(bundle), "--trusted-root", str(root)]


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("flags", "code"), [
    (["--certificate-identity-regexp", r"@securesystems\.de", "--certificate-oidc-issuer", ISSUER], 0),
    (["--certificate-identity-regexp", "philipp", "--certificate-oidc-issuer-regexp", r"oidc\.example"], 0),
    (["--certificate-identity-regexp", r"^[a-z.]+@securesystems\.de$", "--certificate-oidc-issuer", ISSUER], 0),
    (["--certificate-identity-regexp", r"^@securesystems\.de", "--certificate-oidc-issuer", ISSUER], 1),
    (["--certificate-identity-regexp", r"@securesystems\.de", "--certificate-oidc-issuer-regexp", r"^oidc"], 1),
    (["--certificate-identity-regexp", r"(?<=philipp)\.belitz", "--certificate-oidc-issuer", ISSUER], 2),
])
def test_cli_regexp_flags_search_as_cosign_does(signed_by_philipp: list[str], flags: list[str], code: int,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    got, err = _cli([*signed_by_philipp, *flags], capsys)
    assert got == code, err
    if code == 1:
        assert "(search)" in err and "philipp.belitz@securesystems.de" in err
    if code == 2:
        assert "lookahead and lookbehind are not supported" in err


def test_cli_help_says_the_flags_search(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["verify-blob", "--help"])
    assert info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "regexp searched for in the SAN, as cosign does" in help_text
    assert "regexp searched for in the issuer, as cosign does" in help_text
