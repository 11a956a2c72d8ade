"""Scans every file under a directory (what act's artifact server stored) for marker strings,
in plain text and in everything that inflates: gzip streams starting anywhere in a file and
the entries of zip archives (act may keep an upload as a zip), recursively. Prints each marker
found and where; exits 1 if any is found, or if the directory holds fewer than MIN_FILES files
or fewer than MIN_SEALED files that start with the seal's magic (so an empty or unsealed store
cannot pass).

    python3 scan_markers.py DIR MIN_FILES MIN_SEALED MARKER...

Before scanning, it checks that it does find a marker inside a gzip stream inside a zip entry,
so a scanner that cannot see through compression fails instead of passing.
"""
import gzip
import io
import pathlib
import sys
import zipfile
import zlib

SEAL_MAGIC = b"ca-seal1"


def inflated_gzip(data):
    """What a gzip stream at the start of data inflates to, up to any damage."""
    out = bytearray()
    while data[:2] == b"\x1f\x8b":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += d.decompress(data)
        except zlib.error:
            break
        data = d.unused_data
    return bytes(out)


def views(data, depth=0):
    """data itself and, recursively, everything inflated out of it."""
    yield data
    if depth > 3:
        return
    start = data.find(b"\x1f\x8b\x08")
    while start >= 0:
        yield from views(inflated_gzip(data[start:]), depth + 1)
        start = data.find(b"\x1f\x8b\x08", start + 1)
    if b"PK\x03\x04" in data:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for name in z.namelist():
                    yield name.encode()
                    yield from views(z.read(name), depth + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError):
            pass


def found(data, markers):
    return sorted({m for v in views(data) for m in markers if m.encode() in v})


def self_check(marker):
    inner = gzip.compress(f"x\n{marker}\n".encode() * 10)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("layer.bin", b"prefix" + inner)
    if found(buf.getvalue(), [marker]) != [marker]:
        raise SystemExit("scan_markers: self-check failed: the scanner misses a marker in a zipped gzip")


def main(directory, min_files, min_sealed, *markers):
    self_check(markers[0])
    files = [p for p in sorted(pathlib.Path(directory).rglob("*")) if p.is_file()]
    problems = []
    sealed = 0
    for path in files:
        data = path.read_bytes()
        sealed += any(v.startswith(SEAL_MAGIC) for v in views(data))
        for marker in found(data, markers) + [m for m in markers if m in str(path)]:
            problems.append(f"{marker} readable in {path}")
    if len(files) < int(min_files):
        problems.append(f"only {len(files)} files stored under {directory}, expected >= {min_files}")
    if sealed < int(min_sealed):
        problems.append(f"only {sealed} sealed files under {directory}, expected >= {min_sealed}")
    for p in problems:
        print(f"scan_markers: {p}")
    if not problems:
        print(f"scan_markers: {len(files)} files ({sealed} sealed layers), none of {len(markers)} markers readable")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
