// Drives ossabus's /api/chat as AI SDK 4's useChat does: callChatApi with the data stream protocol
// (and processDataStream on a raw response), and prints the message the SDK built as JSON.
//
//   node vercel_chat_v4.mjs <base-url> <scenario> <agent> <text>
//
// scenarios: text | client-tool | parse | text-protocol
import { callChatApi, processDataStream } from "@ai-sdk/ui-utils";

const [base, scenario, agent, text] = process.argv.slice(2);
const chatId = `v4-${scenario}-${process.pid}-${Date.now()}`;
let counter = 0;
const generateId = () => `v4id-${++counter}`;

async function chat(messages, { onToolCall, streamProtocol = "data" } = {}) {
  let finished;
  let last;
  await callChatApi({
    api: `${base}/api/chat${streamProtocol === "text" ? "?protocol=text" : ""}`,
    body: { id: chatId, messages, agent },
    streamProtocol,
    credentials: undefined,
    headers: undefined,
    abortController: () => null,
    restoreMessagesOnFailure: () => {},
    onResponse: undefined,
    onUpdate: ({ message }) => { last = message; },
    onFinish: (message, options) => { finished = { message, options }; },
    onToolCall,
    generateId,
    fetch: undefined,
    lastMessage: messages.at(-1),
  });
  return { finished, last };
}

const user = { id: "u1", role: "user", content: text, parts: [{ type: "text", text }] };
const result = { chatId };
if (scenario === "text" || scenario === "text-protocol") {
  const { finished } = await chat([user], { streamProtocol: scenario === "text" ? "data" : "text" });
  result.message = finished.message;
  result.finishReason = finished.options?.finishReason;
  result.usage = finished.options?.usage;
} else if (scenario === "client-tool") {
  const calls = [];
  const first = await chat([user], {
    onToolCall: ({ toolCall }) => {
      calls.push(toolCall);
      return { city: toolCall.args.city, sky: "foggy (from v4)" };
    },
  });
  result.calls = calls;
  result.first = first.finished.message;
  // as useChat does with maxSteps > 1: send the conversation again, the tool results included
  const second = await chat([user, first.finished.message]);
  result.second = second.finished.message;
} else if (scenario === "parse") {
  const response = await fetch(`${base}/api/chat`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ id: chatId, agent, messages: [user] }),
  });
  result.status = response.status;
  result.header = response.headers.get("x-vercel-ai-data-stream");
  const parts = [];
  const record = (type) => (value) => { parts.push({ type, value }); };
  await processDataStream({
    stream: response.body,
    onTextPart: record("text"),
    onErrorPart: record("error"),
    onToolCallStreamingStartPart: record("tool_call_streaming_start"),
    onToolCallDeltaPart: record("tool_call_delta"),
    onToolCallPart: record("tool_call"),
    onToolResultPart: record("tool_result"),
    onStartStepPart: record("start_step"),
    onFinishStepPart: record("finish_step"),
    onFinishMessagePart: record("finish_message"),
  });
  result.parts = parts;
} else {
  throw new Error(`unknown scenario ${scenario}`);
}
console.log(JSON.stringify(result));
