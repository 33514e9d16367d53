// Loaded before xterm.js on the console page. That page's CSP allows <style> elements only
// with the nonce made for this response (<meta name="style-nonce">), so every <style> element
// created through document.createElement gets it: xterm.js's DOM renderer creates two (its
// theme and its cell sizes) and sets their text itself (see xtermjs/xterm.js#4445). Markup
// injected into the page cannot know the nonce: its styles stay refused.
"use strict";
(() => {
  const nonce = document.querySelector('meta[name="style-nonce"]')?.content;
  if (!nonce) return;
  const createElement = Document.prototype.createElement;
  Document.prototype.createElement = function (tag, options) {
    const element = createElement.call(this, tag, options);
    if (String(tag).toLowerCase() === "style") element.nonce = nonce;
    return element;
  };
  // xterm.js gives a cell a 24-bit colour with setAttribute("style", ...), which style-src
  // refuses; the same declarations through the CSSOM are allowed. Only for spans (xterm.js's
  // cells): no other code on this page sets a style attribute, and markup is never involved.
  const setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    if (this instanceof HTMLSpanElement && String(name).toLowerCase() === "style") {
      this.style.cssText = String(value);
      return undefined;
    }
    return setAttribute.call(this, name, value);
  };
})();
