// Server-sent events read from a fetch() response body, so that the token can go in a header (EventSource cannot
// send one). Used by the board and the crew app.
"use strict";
window.CityLoopEvents = {
  // Calls (and awaits) onEvent(id, kind, data) for each event with data, data parsed as JSON; returns at the end.
  read: async function (body, onEvent) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let id = null, kind = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("id: ")) id = line.slice(4);
          else if (line.startsWith("event: ")) kind = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) await onEvent(id, kind, JSON.parse(data));
      }
    }
  },
};
