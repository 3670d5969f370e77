"""The request as Authlib's grants read it (``OAuthRequest``), read from Starlette's once.

Authlib has no Starlette server integration; its Flask one is the model: a request whose
payload keeps repeated parameters (PKCE and the duplicate-parameter checks read ``datalist``).
Authlib's core is sync: ``RequestReader.read`` reads the body first, then the endpoints call
into Authlib from a threadpool. What every endpoint refuses before Authlib sees a request is
checked here, once: a body that is not a form (RFC 6749 Appendix B), a repeated parameter
(§3.1, §3.2: "Request and response parameters MUST NOT be included more than once"; but
``resource``, which RFC 8707 §2 lets a client repeat), and characters a parameter's syntax does
not allow (Appendix A).
"""

from __future__ import annotations

from collections import defaultdict
from urllib.parse import unquote_plus

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from starlette.datastructures import Headers
from starlette.requests import Request as HTTPRequest

from gateway.forwarded import ForwardedPolicy

#: longer than any code, refresh token, password or e-mail address of ours: refused unread
MAX_CREDENTIAL_LENGTH = 512
#: RFC 6749 Appendix A: VSCHAR, %x20-7E
VSCHAR = frozenset(chr(c) for c in range(0x20, 0x7F))
#: NQSCHAR, %x20-21 / %x23-5B / %x5D-7E: also all that an error description may hold (§5.2)
NQSCHAR = VSCHAR - {'"', "\\"}

#: RFC 8707 §2: "Multiple "resource" parameters MAY be used to indicate that the requested
#: token is intended to be used at multiple resources"
REPEATABLE = frozenset({"resource"})

FORM = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 64
#: a token request is a few hundred bytes; no parameter we read comes near this
MAX_FORM_BYTES = 1 << 20

#: parameters whose syntax Appendix A (and RFC 7636 §4.1-4.3) limits to printable ASCII
ASCII_PARAMETERS = {
    "client_id": VSCHAR,
    "client_secret": VSCHAR,
    "state": VSCHAR,
    # not limited by OpenID Connect Core §3.1.2.1, but echoed into ID tokens and stored: as
    # ``state``, printable ASCII (what every client's random nonce is)
    "nonce": VSCHAR,
    "code": VSCHAR,
    "refresh_token": VSCHAR,
    "code_verifier": VSCHAR,
    "code_challenge": VSCHAR,
    "response_type": NQSCHAR,
    "grant_type": NQSCHAR,
    "scope": NQSCHAR,
    "redirect_uri": NQSCHAR,
    "code_challenge_method": NQSCHAR,
}


class Payload(OAuth2Payload):
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in items:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist

    def has_repeats(self) -> bool:
        """A name given more than once (RFC 6749 §3.1, §3.2: not allowed), but a repeatable one."""
        return any(
            len(values) > 1 and name not in REPEATABLE for name, values in self._datalist.items()
        )


class OAuthRequest(OAuth2Request):
    """What Authlib's grants read: ``payload``, ``args``, ``form``, ``headers``; who sent
    it (``client_addr``, for the login throttle); at the token endpoint, the thumbprint of the
    key its DPoP proof proved (``dpop_jkt``, RFC 9449; None: no proof)."""

    dpop_jkt: str | None = None

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Headers,
        query: list[tuple[str, str]],
        form: list[tuple[str, str]],
        client_addr: str,
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = Payload(query + form)
        self._args = dict(query)
        self._form = dict(form)
        self.client_addr = client_addr

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def resources(self) -> tuple[str, ...]:
        """Every ``resource`` value (RFC 8707 §2), query and form, in order, each once."""
        return tuple(dict.fromkeys(self.payload.datalist.get("resource", ())))


def _check_syntax(items: list[tuple[str, str]]) -> None:
    for name, value in items:
        allowed = ASCII_PARAMETERS.get(name)
        if allowed is not None and not allowed.issuperset(value):
            raise InvalidRequestError(f"The '{name}' parameter has characters it may not hold.")


async def _read_body(http: HTTPRequest) -> bytes:
    chunks, size = [], 0
    async for chunk in http.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise InvalidRequestError("The request body is too large.")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """An ``application/x-www-form-urlencoded`` body (RFC 6749 Appendix B) as name-value pairs,
    in order, repeats kept: split on "&" (empty pieces skipped), each at its first "=" (none:
    an empty value), then "+" and %XX decoded, the escapes as UTF-8 with invalid sequences
    replaced. What Starlette's form parser (python-multipart) returns, for less work: raw
    non-ASCII bytes are read as Latin-1 there too."""
    pairs = [pair for pair in body.decode("latin-1").split("&") if pair]
    if len(pairs) > MAX_FORM_FIELDS:
        raise InvalidRequestError("The request body has too many parameters.")
    return [
        (unquote_plus(name), unquote_plus(value))
        for name, _, value in (pair.partition("=") for pair in pairs)
    ]


class RequestReader:
    """Reads Starlette's request into an ``OAuthRequest``: the URL as the issuer publishes it,
    and the client's address by the forwarding rule (``ForwardedPolicy``)."""

    def __init__(self, issuer: str, forwarded: ForwardedPolicy) -> None:
        #: the public URL, not the one a TLS-terminating proxy forwarded to
        self.base_url = issuer.rstrip("/")
        self.forwarded = forwarded

    async def read(self, http: HTTPRequest, *, query: bool, form: bool = True) -> OAuthRequest:
        """The form (of a POST) and/or the query string, in Authlib's shape.

        Raises ``InvalidRequestError`` for a body that is not a form or repeats a parameter
        (RFC 6749 §3.1, §3.2: parameters MUST NOT be included more than once)."""
        fields: list[tuple[str, str]] = []
        if form and http.method == "POST":
            ctype = http.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != FORM:
                raise InvalidRequestError(f"The request body must be {FORM}.")
            fields = parse_form(await _read_body(http))
        args = list(http.query_params.multi_items()) if query else []
        _check_syntax(args + fields)
        uri = self.base_url + http.url.path
        if http.url.query:
            uri += "?" + http.url.query
        request = OAuthRequest(
            http.method,
            uri,
            http.headers,
            args,
            fields,
            self.forwarded.client_address(
                http.client.host if http.client else None, http.headers.getlist("x-forwarded-for")
            ),
        )
        if request.payload.has_repeats():  # not named: a name is the request's words
            raise InvalidRequestError("A parameter is repeated.")
        return request
