// The Vercel AI SDK's OpenAI provider on its default model path (`openai(model)` = the Responses
// API) against ossabus: generateText with a tool (the SDK runs it and sends its output back), then
// streamText. Prints what the SDK saw as JSON.
//
//   node ai_sdk_openai.mjs <base-url> <model>
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText, tool, stepCountIs } from "ai";
import { z } from "zod";

const [base, model] = process.argv.slice(2);
const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey: "unused" });

const calls = [];
const weather = tool({
  description: "Weather for a city",
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => {
    calls.push(city);
    return `sunny in ${city}`;
  },
});

const generated = await generateText({
  model: openai(model),
  prompt: '[[call:get_weather {"city": "Bergen"}]] what is the weather?',
  tools: { get_weather: weather },
  stopWhen: stepCountIs(3),
});

const streamed = streamText({ model: openai(model), prompt: "stream through the ai sdk" });
const parts = [];
for await (const delta of streamed.textStream) parts.push(delta);

console.log(
  JSON.stringify({
    calls,
    text: generated.text,
    steps: generated.steps.length,
    finishReason: generated.finishReason,
    streamedText: parts.join(""),
    streamedParts: parts.length,
    usage: await streamed.usage,
  }),
);
