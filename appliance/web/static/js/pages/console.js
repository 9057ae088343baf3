// The trainer's console. A shell for now: the live console fills #console; access was checked
// by the server (trainers of this cohort and admins).
import { boot } from "../ui.js";

await boot({ title: "console.title", signedIn: true });
