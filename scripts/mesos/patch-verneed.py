#!/usr/bin/env python3
"""Rename one symbol-version requirement of an ELF file, in place.

    patch-verneed.py FILE LIBRARY OLD NEW

In FILE's .gnu.version_r section, the requirement of version OLD from LIBRARY (a Verneed
entry's file name, e.g. libcurl.so.4) becomes NEW: the auxiliary entry's name string is
overwritten (NEW must be exactly as long as OLD, so nothing moves) and its vna_hash set to
the ELF hash of NEW. The Mesos library from PyPI asks libcurl for CURL_OPENSSL_3, which
Debian 12's libcurl calls CURL_OPENSSL_4; the symbols and their ABI are the same.

Idempotent: a file that already requires NEW is left alone. Exits non-zero, changing
nothing, when the file is not a 64-bit little-endian ELF or the requirement is not there.
Standard library only.
"""
import struct
import sys

SHT_GNU_VERNEED = 0x6FFFFFFE


def elf_hash(name: bytes) -> int:
    h = 0
    for c in name:
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def cstring(data: bytes, offset: int) -> bytes:
    return data[offset:data.index(b"\0", offset)]


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    path, library = sys.argv[1], sys.argv[2].encode()
    old, new = sys.argv[3].encode(), sys.argv[4].encode()
    if len(old) != len(new):
        print(f"{path}: {old!r} and {new!r} differ in length", file=sys.stderr)
        return 2

    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        print(f"{path}: not a 64-bit little-endian ELF file", file=sys.stderr)
        return 1

    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    verneed = [s for s in sections if s[1] == SHT_GNU_VERNEED]
    if not verneed:
        print(f"{path}: no .gnu.version_r section", file=sys.stderr)
        return 1
    _, _, _, _, vn_off, _, link, count, _, _ = verneed[0]
    strtab = sections[link][4]  # sh_offset of the linked string table (.dynstr)

    entry = vn_off
    for _ in range(count):
        _, vn_cnt, vn_file, vn_aux, vn_next = struct.unpack_from("<HHIII", data, entry)
        if cstring(data, strtab + vn_file) == library:
            aux = entry + vn_aux
            for _ in range(vn_cnt):
                _, _, _, vna_name, vna_next = struct.unpack_from("<IHHII", data, aux)
                name = cstring(data, strtab + vna_name)
                if name == new:
                    print(f"{path}: already requires {new.decode()} from {library.decode()}")
                    return 0
                if name == old:
                    # Only the two changed fields are written: the file is over 100 MB.
                    with open(path, "r+b") as f:
                        f.seek(strtab + vna_name)
                        f.write(new)
                        f.seek(aux)
                        f.write(struct.pack("<I", elf_hash(new)))
                    print(f"{path}: now requires {new.decode()} from {library.decode()}")
                    return 0
                aux += vna_next
        if vn_next == 0:
            break
        entry += vn_next

    print(f"{path}: no requirement of {old.decode()} from {library.decode()}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
