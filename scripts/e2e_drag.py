#!/usr/bin/python3
"""A real drag and drop onto FineTune's window, under Xvfb.

    python3 scripts/e2e_drag.py FILE TARGET_X TARGET_Y

Opens a small GTK 3 window whose button is an X drag source offering FILE
as `text/uri-list` (as a file manager does), then drives the mouse with
xdotool: press on the button, move in steps onto (TARGET_X, TARGET_Y) in
screen coordinates (a point of the app's window), release. Exits 0 once
the drop has been answered (the app asked for the data), 1 otherwise.
The app's window must not overlap the source's (at 0,0, 160x60): move it
first (`xdotool windowmove`).

Debian packages: python3-gi, gir1.2-gtk-3.0, xdotool.
"""

import pathlib
import subprocess
import sys
import threading
import time

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
from gi.repository import Gdk, GLib, Gtk  # noqa: E402


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    path = pathlib.Path(sys.argv[1]).resolve()
    target = (int(sys.argv[2]), int(sys.argv[3]))
    uri = path.as_uri()
    state = {"delivered": False, "done": False}

    window = Gtk.Window(title="finetune-drag-source")
    window.set_default_size(160, 60)
    window.move(0, 0)
    button = Gtk.Button(label="drag me")
    window.add(button)
    button.drag_source_set(Gdk.ModifierType.BUTTON1_MASK, [], Gdk.DragAction.COPY)
    button.drag_source_add_uri_targets()

    def on_get(_widget, _context, data, _info, _time):
        data.set_uris([uri])
        state["delivered"] = True

    button.connect("drag-data-get", on_get)
    button.connect("drag-end", lambda *_: state.update(done=True))
    button.connect("drag-begin", lambda *_: print("e2e_drag: drag started", file=sys.stderr))
    window.show_all()

    def xdo(*args: str) -> None:
        subprocess.run(["xdotool", *args], check=True)

    def drive(sx: int, sy: int) -> None:
        # On its own thread: the GTK loop must keep answering the XDND
        # messages while the pointer moves. GTK starts a drag only after
        # the pointer moves past a threshold, so move in steps.
        xdo("mousemove", str(sx), str(sy))
        time.sleep(0.2)
        xdo("mousedown", "1")
        steps = 8
        for i in range(1, steps + 1):
            x = sx + (target[0] - sx) * i // steps
            y = sy + (target[1] - sy) * i // steps
            xdo("mousemove", str(x), str(y))
            time.sleep(0.15)
        # A few moves over the target, so that it answers the source (XDND
        # status) before the release.
        for dx in (4, -4, 2, 0):
            xdo("mousemove", str(target[0] + dx), str(target[1] + dx))
            time.sleep(0.15)
        time.sleep(0.3)
        xdo("mouseup", "1")
        GLib.timeout_add(3000, Gtk.main_quit)

    def start() -> bool:
        origin = button.get_window().get_origin()
        alloc = button.get_allocation()
        sx, sy = origin[1] + alloc.width // 2, origin[2] + alloc.height // 2
        threading.Thread(target=drive, args=(sx, sy), daemon=True).start()
        return False

    GLib.timeout_add(800, start)
    GLib.timeout_add(20000, Gtk.main_quit)
    Gtk.main()
    if not state["delivered"]:
        print(f"e2e_drag: the drop of {path} was not taken by the window at {target}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
