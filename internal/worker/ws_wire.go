package worker

// WebSocket frames (range 40-49). The worker's app accepts: FrameWSAccept
// carries its choice and the handshake's headers, and the worker waits for
// FrameWSAccepted before it goes on. Then messages travel both ways, cut
// in pieces of at most wsPiece (FlagMore on all but the last). Caddy reads
// ahead of the worker within wsWindow messages, one FrameWSCredit back per
// message the worker's engine took; the worker's sends and closes wait for
// FrameWSDone, as in process they wait for the write.
//
// Worker to Caddy:
const (
	// payload: subprotocol, compression, u32 max message (high, low),
	// then the header pairs (EncodeHeader).
	FrameWSAccept = 40
	// payload: u32 sequence (FrameWSDone echoes it), then a piece of a
	// message; FlagText, FlagMore.
	FrameWSSend = 41
	// payload: u32 sequence, u32 code, reason; FlagNow: drop the
	// connection (CloseNow), nothing is echoed.
	FrameWSClose = 42
	// payload: u32 messages the worker took from those Caddy sent.
	FrameWSCredit = 43
)

// Caddy to worker:
const (
	// payload: u32 result (wsAccepted, wsSubprotocolRefused, wsFailed),
	// then why it failed.
	FrameWSAccepted = 44
	// payload: a piece of a message from the client; FlagText, FlagMore.
	FrameWSMessage = 45
	// payload: u32 code, reason: the client's side ended (1006: no close
	// frame came); no message follows.
	FrameWSEnd = 46
	// payload: u32 sequence, u32 1 if the send or close went out.
	FrameWSDone = 47
)

// Flags of the WebSocket frames.
const (
	FlagText = 1 << 2 // a text message (on every piece)
	FlagMore = 1 << 3 // more pieces of this message follow
	FlagNow  = 1 << 4 // FrameWSClose: CloseNow
)

// FrameWSAccepted results.
const (
	wsAccepted           = 0
	wsSubprotocolRefused = 1 // engine.ErrSubprotocolNotOffered
	wsFailed             = 2
)

// wsPiece bounds one message piece (a frame's payload is MaxPayload at
// most); wsWindow is how many messages Caddy reads ahead of the worker,
// the engine's own window.
const (
	wsPiece  = 1 << 20
	wsWindow = 16
)

// eachPiece hands send a message's pieces in order, each with its flags
// (FlagText for a text message, FlagMore on all but the last), and stops at
// the first error.
func eachPiece(text bool, data []byte, send func(flags uint8, piece []byte) error) error {
	var flags uint8
	if text {
		flags = FlagText
	}
	for {
		piece := data[:min(len(data), wsPiece)]
		data = data[len(piece):]
		more := uint8(0)
		if len(data) > 0 {
			more = FlagMore
		}
		if err := send(flags|more, piece); err != nil || more == 0 {
			return err
		}
	}
}
