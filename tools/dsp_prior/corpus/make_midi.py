"""Write a few small General-MIDI phrases (format 0) for fluidsynth rendering."""

import random
import struct
import sys


def vlq(n):
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def track(events):  # events: (abs_tick, bytes)
    events.sort(key=lambda e: e[0])
    data = b""
    last = 0
    for t, b in events:
        data += vlq(t - last) + b
        last = t
    data += vlq(0) + b"\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(data)) + data


def midi(path, events, tpq=480):
    open(path, "wb").write(b"MThd" + struct.pack(">IHHH", 6, 0, 1, tpq) + track(events))


rng = random.Random(7)


def phrase(ch, program, root, scale, n, dur, vel, chord=False, t0=0):
    ev = [(0, bytes([0xC0 | ch, program]))]
    t = t0
    for _ in range(n):
        deg = rng.choice(range(len(scale)))
        notes = [root + scale[deg]] + (
            [
                root + scale[(deg + 2) % len(scale)] + 12 * ((deg + 2) // len(scale)),
                root + scale[(deg + 4) % len(scale)] + 12 * ((deg + 4) // len(scale)),
            ]
            if chord
            else []
        )
        d = dur * rng.choice([1, 1, 2])
        for nt in notes:
            ev.append((t, bytes([0x90 | ch, nt, vel + rng.randint(-15, 15)])))
            ev.append((t + d - 10, bytes([0x80 | ch, nt, 0])))
        t += d
    return ev


major = [0, 2, 4, 5, 7, 9, 11]
minor = [0, 2, 3, 5, 7, 8, 10]
tempo = [(0, b"\xff\x51\x03" + struct.pack(">I", 500000)[1:])]
specs = {
    "piano": [(0, 0, 60, major, 24, 240, 90, True)],
    "strings": [(0, 48, 55, minor, 10, 960, 80, True)],
    "guitar_bass": [
        (0, 25, 64, major, 28, 240, 95, False),
        (1, 33, 40, major, 14, 480, 100, False),
    ],
    "brass_flute": [(0, 61, 60, major, 16, 480, 90, True), (1, 73, 72, major, 28, 240, 85, False)],
    "organ": [(0, 19, 48, minor, 8, 960, 80, True)],
    "ensemble": [
        (0, 0, 60, major, 24, 240, 85, True),
        (1, 48, 48, major, 6, 960, 70, True),
        (2, 33, 36, major, 12, 480, 100, False),
    ],
}
for name, parts in specs.items():
    ev = list(tempo)
    for p in parts:
        ev += phrase(*p)
    if name in ("guitar_bass", "ensemble"):
        for i in range(48):  # drums on channel 10
            t = i * 240
            ev.append((t, bytes([0x99, 42, 70])))
            ev.append((t + 100, bytes([0x89, 42, 0])))
            if i % 4 == 0:
                ev.append((t, bytes([0x99, 36, 110])))
                ev.append((t + 100, bytes([0x89, 36, 0])))
            if i % 4 == 2:
                ev.append((t, bytes([0x99, 38, 105])))
                ev.append((t + 100, bytes([0x89, 38, 0])))
            if i % 16 == 0:
                ev.append((t, bytes([0x99, 49, 100])))
                ev.append((t + 100, bytes([0x89, 49, 0])))
    midi(f"{sys.argv[1]}/{name}.mid", ev)
