"""RSA signing keys: loading (files, environment, passphrases), checking, generating.

apk finds the public key by the name in the signature entry,
`.SIGN.RSA.<keyname>`, as a file of that exact name in /etc/apk/keys; so a key
is always carried with its `keyname`, the public key's file name such as
`myorg-myapp.rsa.pub`.

Private keys never leave this module: `SigningKey` prints as its key name,
and error messages say where a key came from, never what it holds.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from pakman.apk.errors import SigningKeyError

Algorithm = Literal["RSA", "RSA256"]
ALGORITHMS: dict[str, type[hashes.HashAlgorithm]] = {
    "RSA": hashes.SHA1,
    "RSA256": hashes.SHA256,
    "RSA512": hashes.SHA512,  # read by apk 2.14; pakman does not write it
}
PRIVATE_KEY_VARIABLE = "ABUILD_PRIVATE_KEY"
PUBLIC_KEY_VARIABLE = "ABUILD_PUBLIC_KEY"
DEFAULT_BITS = 4096  # abuild-keygen's default


def _pem_bytes(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    # CI secret stores often flatten newlines to a literal "\n"
    if b"\n" not in data.strip() and b"\\n" in data:
        data = data.replace(b"\\n", b"\n")
    return data


def _public_pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_public(pem: bytes, source: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(_pem_bytes(pem))
    except (ValueError, UnsupportedAlgorithm):
        raise SigningKeyError(f"{source}: not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SigningKeyError(f"{source}: not an RSA public key (apk signatures are RSA)")
    return key


@dataclass(frozen=True, repr=False)
class PublicKey:
    """A public key that checks signatures, with the name apk knows it by."""

    keyname: str
    key: rsa.RSAPublicKey

    def __repr__(self) -> str:
        return f"PublicKey(keyname={self.keyname!r})"

    @classmethod
    def from_pem(cls, pem: str | bytes, keyname: str, *, source: str | None = None) -> PublicKey:
        """Load a PEM public key (SubjectPublicKeyInfo, as `openssl rsa -pubout` writes)."""
        return cls(keyname, _load_public(_pem_bytes(pem), source or keyname))

    @classmethod
    def from_file(cls, path: str | Path) -> PublicKey:
        """Load a public key file; its file name is its key name."""
        path = Path(path)
        return cls(path.name, _load_public(_read_key_file(path, "public key"), str(path)))

    @property
    def pem(self) -> bytes:
        """The key in PEM (SubjectPublicKeyInfo)."""
        return _public_pem(self.key)

    def verify(self, signature: bytes, data: bytes, algorithm: str = "RSA") -> bool:
        """True when `signature` is this key's PKCS#1 v1.5 signature of `data`."""
        digest = ALGORITHMS.get(algorithm)
        if digest is None:
            return False
        try:
            self.key.verify(signature, data, padding.PKCS1v15(), digest())
        except InvalidSignature:
            return False
        return True

    def verify_digest(self, signature: bytes, digest: bytes, algorithm: str = "RSA") -> bool:
        """Like `verify`, given the digest (SHA-1 for RSA, SHA-256 for RSA256) instead of the data."""
        hash_type = ALGORITHMS.get(algorithm)
        if hash_type is None:
            return False
        try:
            self.key.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(hash_type()))
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True, repr=False, eq=False)
class SigningKey:
    """A private RSA key and its key name; signs with PKCS#1 v1.5 over SHA-1 (or SHA-256)."""

    keyname: str
    _private: rsa.RSAPrivateKey
    algorithm: Algorithm = "RSA"

    def __repr__(self) -> str:
        return f"SigningKey(keyname={self.keyname!r}, algorithm={self.algorithm!r})"

    @classmethod
    def from_pem(
        cls,
        pem: str | bytes,
        keyname: str,
        *,
        passphrase: str | bytes | None = None,
        public_pem: str | bytes | None = None,
        algorithm: Algorithm = "RSA",
        source: str = "private key",
        public_source: str = "public key",
    ) -> SigningKey:
        """Load a PEM private key; check it against `public_pem` when given."""
        _check_keyname(keyname)
        if algorithm not in ("RSA", "RSA256"):
            raise SigningKeyError(f"unknown signature type {algorithm!r} (use RSA or RSA256)")
        secret = passphrase.encode() if isinstance(passphrase, str) else passphrase
        try:
            key = _load_private(_pem_bytes(pem), secret)
        except TypeError:
            if secret is None:
                raise SigningKeyError(
                    f"{source}: the key is encrypted; give its passphrase "
                    "(PAKMAN_KEY_PASSPHRASE for the command line)"
                ) from None
            raise SigningKeyError(
                f"{source}: the key is not encrypted but a passphrase was given"
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            hint = " or the passphrase is wrong" if secret is not None else ""
            raise SigningKeyError(f"{source}: not a PEM private key{hint}") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SigningKeyError(f"{source}: not an RSA private key (apk signatures are RSA)")
        if public_pem is not None:
            public = _load_public(_pem_bytes(public_pem), public_source)
            if public.public_numbers() != key.public_key().public_numbers():
                raise SigningKeyError(
                    f"{public_source} does not belong to {source}: the two keys do not match"
                )
        return cls(keyname, key, algorithm)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        public_path: str | Path | None = None,
        keyname: str | None = None,
        passphrase: str | bytes | None = None,
        algorithm: Algorithm = "RSA",
    ) -> SigningKey:
        """Load a private key file; the key name is the public key's file name.

        Without `public_path` the public key is derived, and the key name is
        the private key's file name plus `.pub`, as abuild-sign does.
        """
        path = Path(path)
        pem = _read_key_file(path, "private key")
        public_pem = _read_key_file(Path(public_path), "public key") if public_path else None
        name = keyname or (Path(public_path).name if public_path else f"{path.name}.pub")
        return cls.from_pem(
            pem,
            name,
            passphrase=passphrase,
            public_pem=public_pem,
            algorithm=algorithm,
            source=str(path),
            public_source=str(public_path),
        )

    @classmethod
    def from_env(
        cls,
        keyname: str,
        environ: Mapping[str, str] | None = None,
        *,
        passphrase: str | bytes | None = None,
        algorithm: Algorithm = "RSA",
    ) -> SigningKey:
        """Load the PEM texts in ABUILD_PRIVATE_KEY (and ABUILD_PUBLIC_KEY when set)."""
        env = os.environ if environ is None else environ
        pem = env.get(PRIVATE_KEY_VARIABLE, "")
        if not pem.strip():
            raise SigningKeyError(f"{PRIVATE_KEY_VARIABLE} is not set")
        public = env.get(PUBLIC_KEY_VARIABLE) or None
        return cls.from_pem(
            pem,
            keyname,
            passphrase=passphrase,
            public_pem=public,
            algorithm=algorithm,
            source=PRIVATE_KEY_VARIABLE,
            public_source=PUBLIC_KEY_VARIABLE,
        )

    @property
    def public_key(self) -> PublicKey:
        """The matching public key."""
        return PublicKey(self.keyname, self._private.public_key())

    @property
    def public_pem(self) -> bytes:
        """The public key in PEM, as it goes into /etc/apk/keys/<keyname>."""
        return _public_pem(self._private.public_key())

    @property
    def signature_name(self) -> str:
        """The signature entry's name: `.SIGN.RSA.<keyname>`."""
        return f".SIGN.{self.algorithm}.{self.keyname}"

    def sign(self, data: bytes) -> bytes:
        """The PKCS#1 v1.5 signature of `data` (over SHA-1, or SHA-256 for RSA256)."""
        return self._private.sign(data, padding.PKCS1v15(), ALGORITHMS[self.algorithm]())


@functools.lru_cache(maxsize=8)
def _load_private(pem: bytes, secret: bytes | None) -> Any:
    """Parse (and validate, which is slow for large keys) a key once per process."""
    return serialization.load_pem_private_key(pem, password=secret)


def _check_keyname(keyname: str) -> None:
    if not keyname or "/" in keyname or keyname in (".", "..") or not keyname.isprintable():
        raise SigningKeyError(
            f"bad key name {keyname!r}: it must be a plain file name such as myorg-myapp.rsa.pub"
        )


# A PEM key of 16384 bits is about 13 KB: anything much larger is not a key
# (and /dev/zero would be read until memory ran out).
MAX_KEY_BYTES = 1 << 16


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_KEY_BYTES + 1)
    except FileNotFoundError:
        raise SigningKeyError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot read {what}: {exc.strerror}") from None
    if len(data) > MAX_KEY_BYTES:
        raise SigningKeyError(
            f"{path}: not a {what}: larger than {MAX_KEY_BYTES // 1024} KiB (a PEM key is a few KB)"
        )
    return data


def load_signing_key(
    *,
    private_key: str | Path | None = None,
    public_key: str | Path | None = None,
    keyname: str | None = None,
    passphrase: str | bytes | None = None,
    algorithm: Algorithm = "RSA",
    environ: Mapping[str, str] | None = None,
) -> SigningKey:
    """The signing key from a file when given, else from ABUILD_PRIVATE_KEY.

    A key from the environment needs `keyname` (the original names it
    `<org>-<name>.rsa.pub`).
    """
    if private_key is not None:
        return SigningKey.from_file(
            private_key,
            public_path=public_key,
            keyname=keyname,
            passphrase=passphrase,
            algorithm=algorithm,
        )
    env = os.environ if environ is None else environ
    if not env.get(PRIVATE_KEY_VARIABLE, "").strip():
        raise SigningKeyError(
            f"no signing key: give a private key file or set {PRIVATE_KEY_VARIABLE} "
            "(create a key pair with `pakman keygen`)"
        )
    if public_key is not None:
        env = {**env, PUBLIC_KEY_VARIABLE: _read_key_file(Path(public_key), "public key").decode()}
    if not keyname:
        raise SigningKeyError(
            f"a key from {PRIVATE_KEY_VARIABLE} needs a key name: the public key's file "
            "name in /etc/apk/keys, e.g. myorg-myapp.rsa.pub"
        )
    return SigningKey.from_env(keyname, env, passphrase=passphrase, algorithm=algorithm)


def load_public_keys(paths: Iterable[str | Path]) -> dict[str, PublicKey]:
    """Public keys by key name, from key files and from folders of `*.pub` files (like /etc/apk/keys)."""
    keys: dict[str, PublicKey] = {}
    for path in map(Path, paths):
        if path.is_dir():
            for child in sorted(path.glob("*.pub")):
                if child.is_file():
                    key = PublicKey.from_file(child)
                    keys[key.keyname] = key
        else:
            key = PublicKey.from_file(path)
            keys[key.keyname] = key
    return keys


def default_key_name(environ: Mapping[str, str]) -> str:
    """abuild-keygen's key name: the e-mail address in PACKAGER, else $USER, else pakman."""
    email = environ.get("PACKAGER", "").rpartition("<")[2].partition(">")[0]
    return email if "@" in email else environ.get("USER") or "pakman"


def generate_key(
    directory: str | Path, name: str, *, bits: int = DEFAULT_BITS, now: float | None = None
) -> tuple[Path, Path]:
    """Write a new pair `<name>-<8 hex>.rsa` (mode 0600) and `.rsa.pub`, as abuild-keygen names them.

    The hex digits are the Unix time, as in abuild-keygen. Existing files are
    never overwritten.
    """
    if not name or "/" in name or not name.isprintable():
        raise SigningKeyError(f"bad key name {name!r}: use letters, digits, '@', '.', '_' or '-'")
    directory = Path(directory)
    stem = f"{name}-{int(time.time() if now is None else now):08x}"
    private_path = directory / f"{stem}.rsa"
    public_path = directory / f"{stem}.rsa.pub"
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise SigningKeyError(f"{path} already exists; not overwriting it")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    directory.mkdir(parents=True, exist_ok=True)
    _create_new(private_path, private_pem, 0o600)
    try:
        _create_new(public_path, _public_pem(key.public_key()), 0o644)
    except BaseException:
        private_path.unlink()
        raise
    return private_path, public_path


def _create_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet, with `mode` from the start (no window of wider access)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise SigningKeyError(f"{path} already exists; not overwriting it") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(path, mode)  # O_CREAT honours the umask; set exactly what was asked
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def trusted_key_folder(folder: str | Path, signed: str) -> dict[str, PublicKey]:
    """The *.pub keys of an `--alpine-keys` folder, which `signed` (packages, indexes) need."""
    from pakman.errors import ConfigError

    if not Path(folder).is_dir():
        raise ConfigError(
            f"--alpine-keys {folder}: not a folder; give one holding the *.pub keys the "
            f"{signed} are signed with, like /etc/apk/keys"
        )
    keys = load_public_keys([folder])
    if not keys:
        raise ConfigError(f"--alpine-keys {folder}: there are no *.pub keys in it")
    return keys
