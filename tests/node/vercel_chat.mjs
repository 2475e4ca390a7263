// Drives ossabus's /api/chat with the Vercel AI SDK's own chat logic (AbstractChat +
// DefaultChatTransport, no React) and stream parsers, and prints what the SDK built as JSON.
//
//   node vercel_chat.mjs <base-url> <scenario> <agent> <text> [chat-id]
//
// scenarios: text | client-tool | approve | deny | regenerate | drop-and-resume | parse
import {
  AbstractChat,
  DefaultChatTransport,
  lastAssistantMessageIsCompleteWithApprovalResponses,
  lastAssistantMessageIsCompleteWithToolCalls,
  parseJsonEventStream,
  readUIMessageStream,
  uiMessageChunkSchema,
} from "ai";

const [base, scenario, agent, text, givenId] = process.argv.slice(2);
const chatId = givenId ?? `chat-${scenario}-${process.pid}-${Date.now()}`;

class MemoryState {
  constructor() {
    this.status = "ready";
    this.error = undefined;
    this.messages = [];
  }
  pushMessage = (m) => { this.messages = [...this.messages, m]; };
  popMessage = () => { this.messages = this.messages.slice(0, -1); };
  replaceMessage = (i, m) => { this.messages = [...this.messages.slice(0, i), m, ...this.messages.slice(i + 1)]; };
  snapshot = (thing) => structuredClone(thing);
}

class Chat extends AbstractChat {
  constructor(init) {
    super({ ...init, state: new MemoryState() });
  }
  get snapshot() {
    return { status: this.status, error: this.state.error?.message, messages: this.state.messages };
  }
}

function transport() {
  return new DefaultChatTransport({ api: `${base}/api/chat`, body: { agent } });
}

async function settle(chat, timeoutMs = 30000) {
  // automatic sends (tool outputs, approvals) start after the first response: wait until quiet
  const deadline = Date.now() + timeoutMs;
  let quiet = 0;
  while (Date.now() < deadline && quiet < 5) {
    await new Promise((r) => setTimeout(r, 100));
    quiet = chat.status === "ready" || chat.status === "error" ? quiet + 1 : 0;
  }
}

async function streamParts(response) {
  const chunks = parseJsonEventStream({ stream: response.body, schema: uiMessageChunkSchema });
  const raw = [];
  const parsed = chunks.pipeThrough(
    new TransformStream({
      transform(part, controller) {
        if (!part.success) throw part.error;
        raw.push(part.value);
        controller.enqueue(part.value);
      },
    }),
  );
  let message;
  for await (const m of readUIMessageStream({ stream: parsed })) message = m;
  return { raw, message };
}

function post(body, signal) {
  return fetch(`${base}/api/chat`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
}

const result = { chatId };
if (scenario === "text" || scenario === "regenerate") {
  const chat = new Chat({ id: chatId, transport: transport() });
  await chat.sendMessage({ text });
  result.first = chat.snapshot;
  if (scenario === "regenerate") {
    await chat.regenerate();
    result.after = chat.snapshot;
  }
} else if (scenario === "client-tool") {
  const calls = [];
  const chat = new Chat({
    id: chatId,
    transport: transport(),
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls,
    onToolCall: ({ toolCall }) => {
      calls.push(toolCall);
      // not awaited, as the SDK's docs say: the chat finishes this response first
      chat.addToolOutput({
        tool: toolCall.toolName,
        toolCallId: toolCall.toolCallId,
        output: { city: toolCall.input.city, sky: "foggy (from the browser)" },
      });
    },
  });
  await chat.sendMessage({ text });
  await settle(chat);
  result.calls = calls;
  result.final = chat.snapshot;
} else if (scenario === "approve" || scenario === "deny") {
  const chat = new Chat({
    id: chatId,
    transport: transport(),
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
  });
  await chat.sendMessage({ text });
  result.asked = chat.snapshot;
  const last = chat.snapshot.messages.at(-1);
  const waiting = last.parts.find((p) => p.state === "approval-requested");
  await chat.addToolApprovalResponse({
    id: waiting.approval.id,
    approved: scenario === "approve",
    reason: scenario === "approve" ? undefined : "not today",
  });
  await settle(chat);
  result.final = chat.snapshot;
} else if (scenario === "drop-and-resume") {
  // read a few chunks, drop the connection, then resume through the SDK's reconnect endpoint
  const abort = new AbortController();
  const response = await post(
    { id: chatId, agent, trigger: "submit-message", messages: [{ id: "u1", role: "user", parts: [{ type: "text", text }] }] },
    abort.signal,
  );
  const reader = response.body.getReader();
  let seen = "";
  while (!seen.includes("text-delta")) {
    const { value } = await reader.read();
    seen += new TextDecoder().decode(value);
  }
  abort.abort();
  result.beforeDrop = seen;
  const resumed = await fetch(`${base}/api/chat/${chatId}/stream`);
  result.resumeStatus = resumed.status;
  const { raw, message } = await streamParts(resumed);
  result.resumed = message;
  result.raw = raw;
  const gone = await fetch(`${base}/api/chat/${chatId}/stream`);
  result.afterStatus = gone.status;
} else if (scenario === "parse") {
  const response = await post({
    id: chatId, agent, trigger: "submit-message",
    messages: [{ id: "u1", role: "user", parts: [{ type: "text", text }] }],
  });
  result.status = response.status;
  result.headers = Object.fromEntries(response.headers);
  const { raw, message } = await streamParts(response);
  result.raw = raw;
  result.message = message;
} else {
  throw new Error(`unknown scenario ${scenario}`);
}
console.log(JSON.stringify(result));
