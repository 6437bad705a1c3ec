"""Profile a model on a board that runs the edgepack harness, over a serial line.

Flashing is the user's (or pyocd's) job. edgepack opens the port, sends the start
byte ``S`` until the board answers HELLO, asks for ``R <runs> <warmup>``, reads the
RUN/RESULT/DONE lines (harness protocol v1, :mod:`edgepack.tflm.protocol`)
with timeouts and checksums, and reports latency from cycles and the board clock,
the TFLM arena used, and - when a device profile gives the active power - energy as
latency x power, labelled "estimated". The output CRC-32 the board reports can be
checked against the TFLM host interpreter run on the same input pattern.

Example::

    with open_device("serial:socket://127.0.0.1:5555", profile="nucleo-l4r5zi") as dev:
        result = dev.profile(Path("model.tflite"), Settings(runs=10, warmup=2))
    print(result.latency.median_us, result.memory.arena_bytes)
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from ...errors import DeviceError
from ...profiles import profile_power
from ...tflm import protocol as hp
from ..artifact import ResolvedArtifact
from ..lifecycle import ARENA, CYCLES, ENERGY_ESTIMATE, LATENCY, OUTPUT_CHECKSUM, Device
from ..result import DeviceInfo, Energy, Latency, Memory, ProfileResult, Settings

DEFAULT_TIMEOUT_S = 30.0
HANDSHAKE_TIMEOUT_S = 10.0
RESEND_START_S = 0.5


class LineReader:
    """Reads harness lines from a pyserial-like port with per-line deadlines.

    ``port`` needs ``read(n)``/``write(b)`` and a short read timeout; ``name`` is
    used in error messages.
    """

    def __init__(self, port, name: str):
        self.port = port
        self.name = name
        self._buf = b""

    def _read_some(self) -> bytes:
        try:
            return self.port.read(max(1, getattr(self.port, "in_waiting", 0) or 1))
        except Exception as e:  # pyserial raises SerialException/OSError on unplug
            raise DeviceError(f"serial device {self.name} disconnected ({e}); reconnect the board and retry") from None

    def write(self, data: bytes) -> None:
        try:
            self.port.write(data)
            self.port.flush()
        except Exception as e:
            raise DeviceError(f"serial device {self.name} disconnected (write failed: {e}); reconnect the board and retry") from None

    def raw_line(self, timeout_s: float, on_idle: Optional[Callable[[], None]] = None) -> Optional[bytes]:
        """The next "\\n"-terminated line (without it), or None when ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            if time.monotonic() > deadline:
                return None
            chunk = self._read_some()
            if chunk:
                self._buf += chunk
                if len(self._buf) > 4096 and b"\n" not in self._buf:
                    raise DeviceError(f"serial device {self.name} sent 4 KB without a line end; "
                                      "check the baud rate (115200 8N1) and that the edgepack harness is flashed")
            elif on_idle is not None:
                on_idle()
        line, _, self._buf = self._buf.partition(b"\n")
        return line.rstrip(b"\r")

    def message(self, timeout_s: float, waiting_for: str) -> hp.Message:
        """The next valid harness message; DeviceError on timeout, bad checksum or garbage."""
        line = self.raw_line(timeout_s)
        if line is None:
            raise DeviceError(f"serial device {self.name}: no {waiting_for} line within {timeout_s:g} s; "
                              "reset the board or raise --timeout")
        return hp.parse(line)


def handshake(reader: LineReader, timeout_s: float = HANDSHAKE_TIMEOUT_S) -> hp.Message:
    """Send ``S`` every 0.5 s until the board prints HELLO; returns the HELLO message.

    Lines that are not valid harness lines before HELLO (boot noise) are skipped; if no
    HELLO comes within ``timeout_s`` the error quotes the last thing received.
    """
    deadline = time.monotonic() + timeout_s
    last_sent = 0.0
    last_seen = b""

    def resend() -> None:
        nonlocal last_sent
        if time.monotonic() - last_sent >= RESEND_START_S:
            reader.write(hp.START_BYTE)
            last_sent = time.monotonic()

    while time.monotonic() < deadline:
        resend()
        line = reader.raw_line(min(RESEND_START_S, max(0.01, deadline - time.monotonic())), on_idle=resend)
        if line is None or not line.strip():
            continue
        last_seen = line
        try:
            msg = hp.parse(line)
        except DeviceError:
            continue
        if msg.kind == "HELLO":
            if msg.int("v") != hp.VERSION:
                raise DeviceError(f"serial device {reader.name} speaks harness protocol v{msg.fields['v']}, "
                                  f"edgepack speaks v{hp.VERSION}: rebuild the firmware with this edgepack")
            return msg
        if msg.kind == "ERR":
            _raise_board_error(reader.name, msg)
    seen = f"; last received: {last_seen[:60]!r}" if last_seen else "; nothing received"
    raise DeviceError(f"serial device {reader.name}: no HELLO within {timeout_s:g} s{seen}. "
                      "Flash the edgepack profiling harness, check the port and baud rate, then reset the board")


def _raise_board_error(name: str, msg: hp.Message) -> None:
    raise DeviceError(f"board on {name} reported error {msg.fields.get('code', '?')}: "
                      f"{msg.text('msg')}; fix the firmware build (arena size, op resolver) and reflash")


def session_deadline_s(timeout_s: float, runs: int, warmup: int) -> float:
    """The whole session's deadline: every inference (timed or warm-up) and the RESULT/DONE
    lines may each take up to the per-line ``timeout_s``, and no longer."""
    return timeout_s * (runs + warmup + 2)


def read_session(reader: LineReader, runs: int, warmup: int, timeout_s: float,
                 session_timeout_s: Optional[float] = None) -> dict:
    """After HELLO: send the run request and collect RUN cycles and the RESULT fields.

    Each line must come within ``timeout_s`` and the whole session within
    ``session_timeout_s`` (default :func:`session_deadline_s`), so a board that keeps
    sending valid lines still ends; lines out of protocol order (a RUN past the
    requested count, a second RESULT, anything after RESULT but DONE) are errors.
    """
    total = session_timeout_s if session_timeout_s is not None else session_deadline_s(timeout_s, runs, warmup)
    deadline = time.monotonic() + total
    reader.write(hp.run_command(runs, warmup))
    cycles: list[int] = []
    result: Optional[hp.Message] = None
    while True:
        left = deadline - time.monotonic()
        line = reader.raw_line(min(timeout_s, max(left, 0.0)))
        if line is None and left >= timeout_s:
            raise DeviceError(f"serial device {reader.name}: no RUN/RESULT/DONE line within {timeout_s:g} s; "
                              "reset the board or raise --timeout")
        if line is None or time.monotonic() > deadline:
            raise DeviceError(f"serial device {reader.name}: the session did not end within {total:g} s "
                              f"({len(cycles)} of {runs} runs{', RESULT' if result else ''}, no DONE); reset the "
                              "board, check it runs the edgepack harness, or raise --timeout")
        msg = hp.parse(line)
        if msg.kind == "ERR":
            _raise_board_error(reader.name, msg)
        if result is not None and msg.kind != "DONE":
            raise DeviceError(f"board on {reader.name} sent EP {msg.kind} after its RESULT (only DONE may follow); "
                              "the harness is not edgepack's v1 firmware - rebuild and reflash it")
        if msg.kind == "RUN":
            if msg.int("i") != len(cycles) or len(cycles) >= runs:
                raise DeviceError(f"serial device {reader.name}: run {msg.int('i')} arrived, expected "
                                  f"{'run ' + str(len(cycles)) if len(cycles) < runs else 'RESULT'} (of {runs} "
                                  "requested); lines were lost or the firmware ignores the request - check the "
                                  "cable and baud rate")
            cycles.append(msg.int("cycles"))
        elif msg.kind == "RESULT":
            result = msg
        elif msg.kind == "DONE":
            status = msg.int("status")
            if status != 0:
                raise DeviceError(f"board on {reader.name} finished with status {status}; see its ERR line")
            break
        elif msg.kind == "HELLO":
            raise DeviceError(f"board on {reader.name} restarted during the run (HELLO again); "
                              "check its power supply and watchdog")
    if len(cycles) != runs or result is None:
        raise DeviceError(f"board on {reader.name} sent {len(cycles)} of {runs} runs"
                          f"{'' if result else ' and no RESULT'}; the harness build is incomplete")
    return {"cycles": cycles, "arena_used": result.int("arena_used"),
            "crc32": result.text("crc32").lower(), "out_bytes": result.int("out_bytes")}


def reference_crc32(model: bytes) -> tuple[str, int]:
    """CRC-32 and byte count of output 0 when the TFLM host interpreter runs the input pattern
    (:func:`edgepack.tflm.harness_expectation`, the one home of that computation).

    Example: ``crc, n = reference_crc32(Path("m.tflite").read_bytes())``.
    """
    from ...errors import EdgepackError
    from ...tflm import harness_expectation

    try:
        exp = harness_expectation(model)
    except EdgepackError as e:
        raise DeviceError(f"the TFLM host interpreter cannot run the model ({e}); "
                          "check the model with `edgepack package --target tflm`") from None
    return exp["crc32"], exp["out_bytes"]


class SerialDevice(Device):
    """A board running the edgepack profiling harness, reached through pyserial.

    ``target`` is anything ``serial.serial_for_url`` opens: ``/dev/ttyACM0``, ``COM3``,
    ``socket://127.0.0.1:5555`` (QEMU's or ser2net's TCP serial), ``rfc2217://...``.
    Options: ``profile`` (device profile giving the power figures for the energy
    estimate), ``baud``, ``timeout`` (seconds to wait for each line once running),
    ``handshake_timeout`` (seconds to wait for HELLO), ``session_timeout`` (seconds for the
    whole run session; default ``timeout`` x (runs + warmup + 2)) and ``check_output`` (compare
    the board's output CRC with the TFLM host interpreter's on the same input; int8
    kernels are bit-exact across builds).

    Lifecycle: connect (open the port) -> prepare (remember the model) -> run
    (handshake, run request, read the lines) -> close (close the port).
    """

    kind = "serial"
    capabilities = frozenset({LATENCY, CYCLES, ARENA, OUTPUT_CHECKSUM, ENERGY_ESTIMATE})
    option_names = frozenset({"profile", "baud", "timeout", "handshake_timeout", "check_output",
                              "session_timeout"})

    def __init__(self, target: str, profile: Optional[str] = None, baud: int = hp.BAUD,
                 timeout: float = DEFAULT_TIMEOUT_S, handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
                 check_output: bool = True, session_timeout: Optional[float] = None):
        super().__init__(target)
        if not target:
            raise DeviceError("serial device: no port given; use serial:/dev/ttyACM0 or serial:socket://HOST:PORT")
        self.port = target
        self.baud = int(baud)
        self.timeout = float(timeout)
        self.handshake_timeout = float(handshake_timeout)
        self.session_timeout = None if session_timeout is None else float(session_timeout)
        self.check_output = check_output
        self._clock, self._active_mw, self._pname = profile_power(profile)
        self._serial = None
        self._artifact: Optional[ResolvedArtifact] = None

    def connect(self) -> None:
        """Open the serial port (kept open until :meth:`close`)."""
        if self._serial is not None:
            return
        import serial

        try:
            self._serial = serial.serial_for_url(self.port, baudrate=self.baud, timeout=0.05, write_timeout=5)
        except (serial.SerialException, OSError, ValueError) as e:
            raise DeviceError(f"cannot open serial port {self.port} ({e}); check `edgepack devices` "
                              "for the port name and that no other program holds it") from None

    def prepare(self, artifact: ResolvedArtifact) -> None:
        """Remember the model the board should be running (flashing is the user's job)."""
        self._artifact = artifact

    def run_harness(self, settings: Settings) -> tuple[hp.Message, dict]:
        """Handshake and run on the open port; returns (HELLO, session fields)."""
        self.connect()
        reader = LineReader(self._serial, self.port)
        hello = handshake(reader, self.handshake_timeout)
        return hello, read_session(reader, settings.runs, settings.warmup, self.timeout, self.session_timeout)

    def run(self, settings: Settings) -> ProfileResult:
        """Run the flashed model ``settings.runs`` times and return the measured result."""
        if self._artifact is None:
            raise DeviceError(f"serial device {self.port}: prepare(artifact) must come before run()")
        hello, session = self.run_harness(settings)
        return build_result(self, self._artifact, hello, session, settings)

    def close(self) -> None:
        """Close the serial port."""
        if self._serial is not None:
            try:
                self._serial.close()
            finally:
                self._serial = None


def check_model(name: str, hello: hp.Message, art: ResolvedArtifact) -> None:
    """The board must run the artifact's model: same byte count as the .tflite."""
    if hello.int("bytes") != len(art.model):
        raise DeviceError(f"board on {name} runs a {hello.int('bytes')}-byte model '{hello.fields['model']}', "
                          f"not {art.path} ({len(art.model)} bytes): flash the firmware packaged from this model")


def build_result(dev, art: ResolvedArtifact, hello: hp.Message, session: dict, settings: Settings,
                 kind: str = "serial", notes: Optional[list[str]] = None) -> ProfileResult:
    """Turn a harness session into a ProfileResult (shared with the QEMU device)."""
    model = art.model
    check_model(dev.port, hello, art)
    clock = hello.int("clock_hz")
    notes = list(notes or [])
    if kind == "serial" and dev._clock and dev._clock != clock:
        notes.append(f"board reports clock_hz={clock}, profile {dev._pname} says {dev._clock}; "
                     "latency uses the board's figure")
    us = [hp.latency_us(c, clock) for c in session["cycles"]]
    lat = Latency.from_samples_us(us, source="measured")
    lat.cycles = float(sorted(session["cycles"])[len(session["cycles"]) // 2])
    if dev.check_output:
        want, nbytes = reference_crc32(model)
        if not hp.crc_matches(session["crc32"], want) or nbytes != session["out_bytes"]:
            hint = (" (TFLM reuses the input buffer for activations: a harness must refill the input before "
                    "every invoke)" if settings.runs + settings.warmup > 1 else "")
            raise DeviceError(f"board on {dev.port} output CRC {session['crc32']} ({session['out_bytes']} B) differs "
                              f"from the TFLM host interpreter's {want} ({nbytes} B) on the same input{hint}: the "
                              "firmware computes something else - rebuild it from this model, or pass "
                              "check_output=False")
        notes.append("output CRC-32 matches the TFLM host interpreter on the harness input pattern")
    return ProfileResult(
        device=DeviceInfo(kind=kind, id=dev.target, name=hello.fields.get("model", ""), profile=dev._pname,
                          details={"clock_hz": str(clock), "arena_configured": hello.fields["arena"],
                                   "protocol": f"v{hello.fields['v']}"}),
        artifact=art.artifact(), settings=settings, latency=lat,
        memory=Memory(source="measured", arena_bytes=session["arena_used"]),
        energy=estimated_energy(lat.median_us, dev._active_mw, dev._pname),
        output_checksum=session["crc32"], notes=notes,
    )


def estimated_energy(latency_us: Optional[float], active_mw: Optional[float], profile: Optional[str]) -> Energy:
    """Energy per inference = active power x latency, labelled estimated (not_available without power)."""
    if latency_us is None or active_mw is None:
        return Energy(source="not_available",
                      method="no power figure: pass a device profile with power.active_mw (--profile NAME)")
    return Energy(source="estimated", per_inference_mj=active_mw * latency_us / 1e6,
                  method=f"profile {profile} active power {active_mw:g} mW x median latency")
