"""Draws a tmux `capture-pane -e` dump (SGR colours) as a PNG."""
import re
import sys

from PIL import Image, ImageDraw, ImageFont

BASE = ["#1d1f21", "#cc6666", "#b5bd68", "#f0c674", "#81a2be", "#b294bb", "#8abeb7", "#c5c8c6"]
BRIGHT = ["#666666", "#ff7777", "#c8d77a", "#ffd98a", "#96b9d6", "#c9a9d6", "#9fd9d2", "#ffffff"]
FG, BG = "#d8dee9", "#1d1f21"


def xterm256(n):
    if n < 8:
        return BASE[n]
    if n < 16:
        return BRIGHT[n - 8]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return "#%02x%02x%02x" % (steps[n // 36], steps[(n // 6) % 6], steps[n % 6])
    v = 8 + (n - 232) * 10
    return "#%02x%02x%02x" % (v, v, v)


def cells(line):
    """Yields (char, fg, bg, bold) for one line of SGR-coloured text."""
    fg, bg, bold, rev = FG, BG, False, False
    for part in re.split(r"(\x1b\[[0-9;]*m)", line):
        if part.startswith("\x1b["):
            codes = [int(c) if c else 0 for c in part[2:-1].split(";")]
            i = 0
            while i < len(codes):
                c = codes[i]
                if c == 0:
                    fg, bg, bold, rev = FG, BG, False, False
                elif c == 1:
                    bold = True
                elif c == 2:
                    fg = "#777777"
                elif c == 7:
                    rev = True
                elif c == 22:
                    bold = False
                elif c == 27:
                    rev = False
                elif 30 <= c <= 37:
                    fg = BASE[c - 30]
                elif c == 39:
                    fg = FG
                elif 40 <= c <= 47:
                    bg = BASE[c - 40]
                elif c == 49:
                    bg = BG
                elif 90 <= c <= 97:
                    fg = BRIGHT[c - 90]
                elif 100 <= c <= 107:
                    bg = BRIGHT[c - 100]
                elif c in (38, 48) and i + 2 < len(codes) and codes[i + 1] == 5:
                    if c == 38:
                        fg = xterm256(codes[i + 2])
                    else:
                        bg = xterm256(codes[i + 2])
                    i += 2
                i += 1
        else:
            for ch in part:
                yield (ch, bg if rev else fg, fg if rev else bg, bold)


def main(src, dst):
    lines = open(src, encoding="utf-8").read().rstrip("\n").split("\n")
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", 14)
    bold = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf", 14)
    cw, ch = 8.4, 17
    width = max(sum(1 for _ in cells(line)) for line in lines)
    img = Image.new("RGB", (int(width * cw) + 20, len(lines) * ch + 20), BG)
    d = ImageDraw.Draw(img)
    for y, line in enumerate(lines):
        for x, (c, fg, bg, b) in enumerate(cells(line)):
            px, py = 10 + x * cw, 10 + y * ch
            if bg != BG:
                d.rectangle([px, py, px + cw, py + ch], fill=bg)
            if c != " ":
                d.text((px, py), c, fill=fg, font=bold if b else font)
    img.save(dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
