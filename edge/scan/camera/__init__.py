"""Frame sources (replay, OpenCV, picamera2, USB HID scanner) behind one interface, and camera-like frame synthesis."""

from __future__ import annotations

import time

from edge.config import CameraConfig, Config
from edge.scan.camera.base import CameraError, EndOfStream, Frame, FrameSource, Monotonic, to_grey

__all__ = ["CameraError", "EndOfStream", "Frame", "FrameSource", "make_source", "to_grey"]


def make_source(config: Config | CameraConfig, *, monotonic: Monotonic = time.monotonic) -> FrameSource:
    """The frame source named by ``camera.source`` (relative paths resolve under device.data_dir)."""
    camera = config.camera if isinstance(config, Config) else config
    path = camera.path
    if path is not None and isinstance(config, Config):
        path = config.resolve(path)
    if camera.source == "replay":
        from edge.scan.camera.replay import ReplaySource

        if path is None:
            raise CameraError("camera.source = replay needs camera.path: set it to a folder of images or a video")
        return ReplaySource(path, fps=camera.fps, loop=camera.loop, monotonic=monotonic)
    if camera.source == "opencv":
        from edge.scan.camera.opencv import OpenCVSource

        targets = [t for t in (camera.device, camera.url, str(path) if path else None) if t is not None]
        if len(targets) != 1:
            raise CameraError("camera.source = opencv needs exactly one of camera.device, camera.url, camera.path")
        return OpenCVSource(targets[0], width=camera.width, height=camera.height, fps=camera.fps,
                            monotonic=monotonic)
    if camera.source == "hid_scanner":
        from edge.scan.camera.hid_scanner import HidScannerSource

        if not camera.scanner_device:
            raise CameraError("event=bad_config camera.source=hid_scanner "
                              "action=set camera.scanner_device (see ls /dev/input/by-id/)")
        return HidScannerSource(camera.scanner_device, gap_s=camera.scanner_gap_s, monotonic=monotonic)
    from edge.scan.camera.picam import Picamera2Source

    return Picamera2Source(width=camera.width, height=camera.height, lores_width=camera.lores_width,
                           lores_height=camera.lores_height, fps=camera.fps,
                           lens_position=camera.lens_position, monotonic=monotonic)
